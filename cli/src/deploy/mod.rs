//! The deployment machinery behind `deploy`, `rollback` and `lock`: the
//! lease a command holds while it changes the environment ([`lease`]), the
//! drivers that start, stop, health-check and switch slots ([`driver`]), and
//! the checklist engine with its journal ([`checklist`]), and the gate's
//! checks of a version's deployment ([`soak`]).

pub mod checklist;
pub mod driver;
pub mod lease;
pub mod soak;
