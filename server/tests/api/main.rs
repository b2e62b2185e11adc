//! API integration tests: the real app on port 0 with a temp data dir.

mod admin;
mod atrest;
mod auth;
mod catalog;
mod checkout;
mod device_inputs;
mod devices;
mod errors;
mod fuzz;
mod helpers;
mod loyalty;
mod metrics;
mod offline;
mod openapi;
mod payments;
mod peers;
mod refunds;
mod shopper;
mod shopper_pay;
mod tls;
mod vending;
mod vends;
mod wallet;
