//! Device backends against their simulators and the compliance suites.

mod payment;
