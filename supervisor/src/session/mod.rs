//! The session's life: startup in order, the control server, reference counting.

pub mod control;
pub mod lifecycle;
pub mod run;
