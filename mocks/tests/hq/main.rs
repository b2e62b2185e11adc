//! Integration tests of the mock HQ (feature `hq`): the upload server through a real
//! tonic client, and `push_catalog` against a small recording `StoreService`.

mod audit;
mod enrol;
mod helpers;
mod push;
mod tls;
mod upload;
