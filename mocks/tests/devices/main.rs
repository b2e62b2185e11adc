//! Device integration tests: the compliance suites against every backend, and faults
//! in the middle of a sale, real drivers against their wire-level simulators.

mod changer;
mod mdb;
mod parsers;
mod payment;
mod printer;
mod scale;
mod scanner;
mod validator;
mod vending;
