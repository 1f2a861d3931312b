//! Costing: step costs, an order's total cost (the sum of its steps' costs),
//! profit and margin, and the expense a completed step books.

use super::money::{Money, MoneyError};
use serde::Serialize;

/// The accounting category of production expenses.
pub const PRODUCTION_COST_CATEGORY: &str = "Production Cost";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    #[error("cost must not be negative")]
    Negative,
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A step's cost as set by an admin or manager: non-negative.
pub fn validate_cost(cost_minor: i64) -> Result<i64, CostError> {
    if cost_minor < 0 { Err(CostError::Negative) } else { Ok(cost_minor) }
}

/// An order's total cost: the sum of its steps' costs.
pub fn total_cost(step_costs: impl IntoIterator<Item = i64>) -> Result<i64, CostError> {
    step_costs.into_iter().try_fold(0i64, |acc, c| {
        let c = validate_cost(c)?;
        acc.checked_add(c).ok_or(CostError::Money(MoneyError::Overflow))
    })
}

/// Profit and margin of an order: computed from the sale's final price and the
/// order's total cost, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Profitability {
    pub total_cost_minor: i64,
    pub final_price_minor: i64,
    pub profit_minor: i64,
    /// Profit as a share of the final price, in basis points (1% = 100), rounded
    /// toward zero; `None` when the final price is zero.
    pub margin_bps: Option<i64>,
}

pub fn profitability(final_price: Money, total_cost: Money) -> Result<Profitability, CostError> {
    let profit = final_price.checked_sub(total_cost)?;
    let margin_bps = if final_price.minor == 0 {
        None
    } else {
        let bps = i128::from(profit.minor) * 10_000 / i128::from(final_price.minor);
        Some(i64::try_from(bps).map_err(|_| MoneyError::Overflow)?)
    };
    Ok(Profitability {
        total_cost_minor: total_cost.minor,
        final_price_minor: final_price.minor,
        profit_minor: profit.minor,
        margin_bps,
    })
}

/// The expense booked when a step with a cost completes: a debit in category
/// "Production Cost" referencing the step. A step that cost nothing books none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepExpense {
    pub amount_minor: i64,
    pub category: &'static str,
    pub reference: String,
    pub description: String,
}

pub fn step_expense(step_id: i64, step_name: &str, order_no: &str, cost_minor: i64) -> Option<StepExpense> {
    (cost_minor > 0).then(|| StepExpense {
        amount_minor: cost_minor,
        category: PRODUCTION_COST_CATEGORY,
        reference: step_reference(step_id),
        description: format!("{step_name} for {order_no}"),
    })
}

/// The unique reference of a step's expense: it can exist only once.
pub fn step_reference(step_id: i64) -> String {
    format!("production_step:{step_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(m: i64) -> Money {
        Money::new(m, "USD".parse().unwrap())
    }

    #[test]
    fn total_is_the_sum_and_refuses_negatives() {
        assert_eq!(total_cost([100, 250, 0]), Ok(350));
        assert_eq!(total_cost([]), Ok(0));
        assert_eq!(total_cost([100, -1]), Err(CostError::Negative));
        assert_eq!(total_cost([i64::MAX, 1]), Err(CostError::Money(MoneyError::Overflow)));
    }

    #[test]
    fn profit_and_margin() {
        let p = profitability(usd(10_000), usd(2_500)).unwrap();
        assert_eq!((p.profit_minor, p.margin_bps), (7_500, Some(7_500)));
        let loss = profitability(usd(1_000), usd(1_500)).unwrap();
        assert_eq!((loss.profit_minor, loss.margin_bps), (-500, Some(-5_000)));
        assert_eq!(profitability(usd(0), usd(10)).unwrap().margin_bps, None);
    }

    #[test]
    fn only_a_step_that_cost_something_books_an_expense() {
        assert_eq!(step_expense(7, "Dyeing", "PO-1", 0), None);
        let e = step_expense(7, "Dyeing", "PO-1", 1200).unwrap();
        assert_eq!((e.amount_minor, e.category, e.reference.as_str()), (1200, "Production Cost", "production_step:7"));
    }

    proptest! {
        #[test]
        fn total_cost_equals_sum(costs in proptest::collection::vec(0i64..1_000_000_000, 0..50)) {
            prop_assert_eq!(total_cost(costs.clone()).unwrap(), costs.iter().sum::<i64>());
        }
    }
}
