//! One file per console page, with the forms it posts.

pub mod accounts;
pub mod dashboard;
pub mod devices;
pub mod login;
pub mod logs;
pub mod sales;
pub mod security;
pub mod stock;
pub mod sync;
pub mod updates;
pub mod vending;
