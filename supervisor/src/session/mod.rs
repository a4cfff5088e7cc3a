//! The session's life: the start-up sequence (`run`, stages 0 to 8 of the crate's
//! theory of operation), the control server (`control`), and reference counting until
//! teardown (`lifecycle`).

pub mod control;
pub mod lifecycle;
pub mod notify;
pub mod run;
