//! The technician console: its HTTP contract (sessions, CSRF, roles, terminal tokens,
//! locks, bad input) and, in a real headless Chromium driven over WebDriver, its pages.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod browser;
mod browser_update;
mod browser_vending;
mod client;
mod forms;
mod http;
mod shop;
mod shop_pay;
mod vending;
mod webdriver;
