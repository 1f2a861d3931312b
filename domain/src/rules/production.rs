//! Production steps and orders: the step state machine (pending → in_progress →
//! completed, forward only, completed exactly at `step_qty`), progress updates,
//! planning, and when an order is completed. Timestamps are set here from the
//! `now` the caller passes, never taken from a request. Also who reaches a
//! step (a production worker: only its own), and what a completed step
//! freezes (its cost, its assignment) and unlocks (its expense).

use super::permissions::Role;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The steps a business makes to order in when it configured none of its own.
pub const DEFAULT_STEPS: [&str; 3] = ["Dyeing", "Handwork", "Stitching"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    InProgress,
    Completed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::InProgress => "in_progress",
            StepStatus::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<StepStatus> {
        match s {
            "pending" => Some(StepStatus::Pending),
            "in_progress" => Some(StepStatus::InProgress),
            "completed" => Some(StepStatus::Completed),
            _ => None,
        }
    }
}

/// An order's status follows its steps'.
pub type OrderStatus = StepStatus;

/// The part of a step the state machine owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepState {
    pub step_qty: Option<i32>,
    pub completed_qty: i32,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl StepState {
    pub fn new(step_qty: Option<i32>) -> Self {
        StepState { step_qty, completed_qty: 0, status: StepStatus::Pending, started_at: None, completed_at: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("completed_qty must not be negative")]
    NegativeQuantity,
    #[error("step_qty must be at least 1")]
    InvalidStepQty,
    #[error("completed_qty {requested} is more than step_qty {step_qty}")]
    QuantityExceeded { requested: i32, step_qty: i32 },
    #[error("the step has no step_qty yet: plan it before recording progress")]
    NotPlanned,
    #[error("step_qty {step_qty} is less than the {completed_qty} already completed")]
    BelowCompleted { step_qty: i32, completed_qty: i32 },
    #[error("a step moves {from} → {to} only forward, one stage at a time")]
    InvalidTransition { from: &'static str, to: &'static str },
    #[error("a step is completed only when completed_qty equals step_qty ({completed_qty} of {})", step_qty.map_or("none".into(), |q| q.to_string()))]
    IncompleteQuantity { completed_qty: i32, step_qty: Option<i32> },
    #[error("the step is completed and can no longer change")]
    AlreadyCompleted,
    #[error("the step is completed: its cost is booked and can no longer change")]
    CostLocked,
    #[error("the step is completed and can no longer be reassigned")]
    ReassignCompleted,
    #[error("step {step_id} is not completed")]
    NotCompleted { step_id: i64 },
}

impl StepError {
    /// Whether the request itself is malformed (400) rather than refused by the
    /// step's current state (422).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, StepError::NegativeQuantity | StepError::InvalidStepQty | StepError::QuantityExceeded { .. })
    }
}

/// Who is looking at or changing a step. A production worker reaches only
/// the steps assigned to it; managers and admins any step of their business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: i64,
    /// True for production workers: the step must be assigned to `user_id`.
    pub own_steps_only: bool,
}

impl Actor {
    /// The actor a user of `role` is: a production worker sees only its own steps.
    pub fn for_role(user_id: i64, role: Role) -> Actor {
        Actor { user_id, own_steps_only: role == Role::ProductionWorker }
    }

    /// Whether the actor may see and change a step assigned to `assigned_user_id`.
    pub fn reaches(&self, assigned_user_id: Option<i64>) -> bool {
        !self.own_steps_only || assigned_user_id == Some(self.user_id)
    }
}

/// A step's cost may change until the step is completed: then its expense
/// is booked.
pub fn cost_may_change(status: StepStatus) -> Result<(), StepError> {
    if status == StepStatus::Completed { Err(StepError::CostLocked) } else { Ok(()) }
}

/// A step may be (re)assigned until it is completed.
pub fn may_reassign(status: StepStatus) -> Result<(), StepError> {
    if status == StepStatus::Completed { Err(StepError::ReassignCompleted) } else { Ok(()) }
}

/// A step's expense is booked only once the step is completed.
pub fn expense_due(step_id: i64, status: StepStatus) -> Result<(), StepError> {
    if status == StepStatus::Completed { Ok(()) } else { Err(StepError::NotCompleted { step_id }) }
}

/// What a change did, beside the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepChange {
    pub state: StepState,
    /// The step became completed by this change (it was not before).
    pub completed_now: bool,
}

fn change(before: &StepState, state: StepState) -> StepChange {
    StepChange { completed_now: before.status != StepStatus::Completed && state.status == StepStatus::Completed, state }
}

/// Records progress: `completed_qty > 0` makes the step in progress,
/// `completed_qty == step_qty` completes it, more than `step_qty` is refused.
/// Progress never moves a step back to pending.
pub fn record_progress(state: &StepState, completed_qty: i32, now: DateTime<Utc>) -> Result<StepChange, StepError> {
    if completed_qty < 0 {
        return Err(StepError::NegativeQuantity);
    }
    if state.status == StepStatus::Completed {
        return Err(StepError::AlreadyCompleted);
    }
    let step_qty = state.step_qty.ok_or(StepError::NotPlanned)?;
    if completed_qty > step_qty {
        return Err(StepError::QuantityExceeded { requested: completed_qty, step_qty });
    }
    let mut next = StepState { completed_qty, ..*state };
    if completed_qty == 0 {
        if state.status != StepStatus::Pending {
            return Err(StepError::InvalidTransition { from: state.status.as_str(), to: StepStatus::Pending.as_str() });
        }
        return Ok(change(state, next));
    }
    next.status = if completed_qty == step_qty { StepStatus::Completed } else { StepStatus::InProgress };
    next.started_at = state.started_at.or(Some(now));
    if next.status == StepStatus::Completed {
        next.completed_at = Some(now);
    }
    Ok(change(state, next))
}

/// Moves a step to `target`: one stage forward at a time; completed only when
/// every unit is done. Asking for the status it already has changes nothing.
pub fn set_status(state: &StepState, target: StepStatus, now: DateTime<Utc>) -> Result<StepChange, StepError> {
    use StepStatus::*;
    let refused = || StepError::InvalidTransition { from: state.status.as_str(), to: target.as_str() };
    match (state.status, target) {
        (from, to) if from == to => Ok(change(state, *state)),
        (Pending, InProgress) => Ok(change(state, StepState { status: InProgress, started_at: Some(now), ..*state })),
        (InProgress, Completed) => {
            if state.step_qty != Some(state.completed_qty) {
                return Err(StepError::IncompleteQuantity {
                    completed_qty: state.completed_qty,
                    step_qty: state.step_qty,
                });
            }
            Ok(change(state, StepState { status: Completed, completed_at: Some(now), ..*state }))
        }
        _ => Err(refused()),
    }
}

/// Plans (or re-plans) how many units a step makes. Not once it is completed,
/// and never below what is already done.
pub fn plan(state: &StepState, step_qty: i32) -> Result<StepState, StepError> {
    if step_qty < 1 {
        return Err(StepError::InvalidStepQty);
    }
    if state.status == StepStatus::Completed {
        return Err(StepError::AlreadyCompleted);
    }
    if step_qty < state.completed_qty {
        return Err(StepError::BelowCompleted { step_qty, completed_qty: state.completed_qty });
    }
    Ok(StepState { step_qty: Some(step_qty), ..*state })
}

/// An order is completed when every one of its steps is, in progress once any
/// step has started, pending otherwise. An order without steps stays pending.
pub fn order_status(steps: impl IntoIterator<Item = StepStatus>) -> OrderStatus {
    let mut any = false;
    let mut all_completed = true;
    let mut any_started = false;
    for s in steps {
        any = true;
        all_completed &= s == StepStatus::Completed;
        any_started |= s != StepStatus::Pending;
    }
    match (any, all_completed, any_started) {
        (true, true, _) => StepStatus::Completed,
        (_, _, true) => StepStatus::InProgress,
        _ => StepStatus::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepStatus::*;
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap()
    }

    #[test]
    fn a_worker_reaches_only_its_own_steps() {
        let worker = Actor::for_role(7, Role::ProductionWorker);
        assert!(worker.own_steps_only);
        assert!(worker.reaches(Some(7)));
        assert!(!worker.reaches(Some(8)));
        assert!(!worker.reaches(None));
        for role in [Role::Admin, Role::Manager] {
            let a = Actor::for_role(7, role);
            assert!(!a.own_steps_only);
            assert!(a.reaches(Some(8)) && a.reaches(None));
        }
    }

    #[test]
    fn a_completed_step_freezes_cost_and_assignment_and_owes_its_expense() {
        for s in [Pending, InProgress] {
            assert_eq!(cost_may_change(s), Ok(()));
            assert_eq!(may_reassign(s), Ok(()));
            assert_eq!(expense_due(3, s), Err(StepError::NotCompleted { step_id: 3 }));
        }
        assert_eq!(cost_may_change(Completed), Err(StepError::CostLocked));
        assert_eq!(may_reassign(Completed), Err(StepError::ReassignCompleted));
        assert_eq!(expense_due(3, Completed), Ok(()));
        assert_eq!(StepError::NotCompleted { step_id: 3 }.to_string(), "step 3 is not completed");
    }

    #[test]
    fn progress_starts_then_completes_the_step() {
        let s = StepState::new(Some(10));
        let c = record_progress(&s, 4, t(1)).unwrap();
        assert_eq!((c.state.status, c.state.started_at, c.completed_now), (InProgress, Some(t(1)), false));
        let c = record_progress(&c.state, 10, t(2)).unwrap();
        assert_eq!((c.state.status, c.state.started_at, c.state.completed_at), (Completed, Some(t(1)), Some(t(2))));
        assert!(c.completed_now);
    }

    #[test]
    fn progress_over_step_qty_is_refused() {
        let s = StepState::new(Some(3));
        assert_eq!(record_progress(&s, 4, t(0)), Err(StepError::QuantityExceeded { requested: 4, step_qty: 3 }));
        assert_eq!(record_progress(&s, -1, t(0)), Err(StepError::NegativeQuantity));
        assert_eq!(record_progress(&StepState::new(None), 1, t(0)), Err(StepError::NotPlanned));
    }

    #[test]
    fn no_skipping_and_no_going_back() {
        let s = StepState::new(Some(1));
        assert!(matches!(set_status(&s, Completed, t(0)), Err(StepError::InvalidTransition { .. })));
        let started = set_status(&s, InProgress, t(0)).unwrap().state;
        assert!(matches!(set_status(&started, Pending, t(1)), Err(StepError::InvalidTransition { .. })));
        assert!(matches!(set_status(&started, Completed, t(1)), Err(StepError::IncompleteQuantity { .. })));
        let done = record_progress(&started, 1, t(2)).unwrap().state;
        assert!(matches!(set_status(&done, InProgress, t(3)), Err(StepError::InvalidTransition { .. })));
        assert_eq!(record_progress(&done, 1, t(3)), Err(StepError::AlreadyCompleted));
        // Asking for the current status is not an error and changes nothing.
        assert_eq!(set_status(&done, Completed, t(4)).unwrap(), StepChange { state: done, completed_now: false });
    }

    #[test]
    fn progress_back_to_zero_would_reopen_the_step_and_is_refused() {
        let s = record_progress(&StepState::new(Some(5)), 2, t(0)).unwrap().state;
        assert!(matches!(record_progress(&s, 0, t(1)), Err(StepError::InvalidTransition { .. })));
    }

    #[test]
    fn planning_keeps_what_is_done() {
        let s = record_progress(&StepState::new(Some(5)), 3, t(0)).unwrap().state;
        assert_eq!(plan(&s, 2), Err(StepError::BelowCompleted { step_qty: 2, completed_qty: 3 }));
        assert_eq!(plan(&s, 0), Err(StepError::InvalidStepQty));
        assert_eq!(plan(&s, 8).unwrap().step_qty, Some(8));
    }

    #[test]
    fn an_order_completes_with_its_last_step() {
        assert_eq!(order_status([Completed, Completed, Completed]), Completed);
        assert_eq!(order_status([Completed, Pending]), InProgress);
        assert_eq!(order_status([Pending, Pending]), Pending);
        assert_eq!(order_status([]), Pending);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Progress(i32),
        Status(StepStatus),
        Plan(i32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (-2i32..15).prop_map(Op::Progress),
            prop_oneof![Just(Pending), Just(InProgress), Just(Completed)].prop_map(Op::Status),
            (-1i32..15).prop_map(Op::Plan),
        ]
    }

    proptest! {
        /// Whatever anyone asks, in any order: the status never moves back,
        /// completed_qty stays within 0..=step_qty, completed means every unit
        /// is done, and the timestamps are set once and never change.
        #[test]
        fn invariants_hold_under_any_sequence(initial in proptest::option::of(1i32..12), ops in proptest::collection::vec(op(), 0..40)) {
            let mut s = StepState::new(initial);
            for (i, op) in ops.into_iter().enumerate() {
                let now = t(i as i64);
                let before = s;
                let result = match op {
                    Op::Progress(q) => record_progress(&s, q, now).map(|c| c.state),
                    Op::Status(st) => set_status(&s, st, now).map(|c| c.state),
                    Op::Plan(q) => plan(&s, q),
                };
                match result {
                    Ok(next) => s = next,
                    Err(_) => prop_assert_eq!(s, before),
                }
                prop_assert!(s.status >= before.status, "went back {:?} -> {:?}", before.status, s.status);
                prop_assert!(s.completed_qty >= 0 && s.completed_qty <= s.step_qty.unwrap_or(0));
                if s.status == Completed {
                    prop_assert_eq!(Some(s.completed_qty), s.step_qty);
                    prop_assert!(s.completed_at.is_some());
                }
                if s.status != Pending { prop_assert!(s.started_at.is_some()); }
                if before.started_at.is_some() { prop_assert_eq!(s.started_at, before.started_at); }
                if before.completed_at.is_some() { prop_assert_eq!(s.completed_at, before.completed_at); }
                if before.status == Completed { prop_assert_eq!(s, before); }
            }
        }

        #[test]
        fn order_is_completed_iff_every_step_is(steps in proptest::collection::vec(prop_oneof![Just(Pending), Just(InProgress), Just(Completed)], 1..8)) {
            prop_assert_eq!(order_status(steps.clone()) == Completed, steps.iter().all(|s| *s == Completed));
        }
    }
}
