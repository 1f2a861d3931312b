//! The deployment machinery behind `deploy`, `rollback` and `lock`: the
//! lease a command holds while it changes the environment ([`lease`]), the
//! drivers that start, stop, health-check and switch slots ([`driver`]), and
//! the checklist engine with its journal ([`checklist`]).

pub mod checklist;
pub mod driver;
pub mod lease;
