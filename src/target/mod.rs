//! Where records are written: the `Form` a job's records go to.

pub mod jiandaoyun;
