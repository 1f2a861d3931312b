//! Pricing a sale: each line as asked (product, quantity, optional unit
//! price) checked against the studio's catalogue (the product is the
//! business's, priced in the business's currency, a price that is not
//! negative, a quantity of at least 1), priced at the catalogue's price unless
//! the line gives its own, and the sale's total. The store reads the
//! catalogue; the checks and the arithmetic are here.

use super::money::{Currency, Money};
use super::sale::{self, PricedLine, SaleError};

/// A line as a sale asks for it.
#[derive(Debug, Clone)]
pub struct NewLine {
    pub product_id: i64,
    pub quantity: i32,
    /// The product's price when `None`.
    pub unit_price_minor: Option<i64>,
}

/// What the catalogue says of a product of the business.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    pub unit_price_minor: i64,
    pub currency: &'a str,
    pub requires_production: bool,
}

/// A line priced, its total checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedSaleLine {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
    pub requires_production: bool,
}

/// A sale's lines priced, and its total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedSale {
    pub lines: Vec<PricedSaleLine>,
    pub total: Money,
}

/// A line refused as asked; `index` counts from 0, as the request's array does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("lines: a sale needs at least one line")]
    NoLines,
    #[error("lines[{index}].product_id: no such product")]
    NoSuchProduct { index: usize },
    #[error("lines[{index}].product_id: priced in {priced_in}, the business sells in {sells_in}")]
    OtherCurrency { index: usize, priced_in: String, sells_in: Currency },
    #[error("lines[{index}].unit_price_minor: must not be negative")]
    NegativePrice { index: usize },
    #[error("lines[{index}].quantity: must be at least 1")]
    Quantity { index: usize },
}

impl LineError {
    /// The request's field at fault (`lines`, `lines[1].quantity`).
    pub fn field(&self) -> String {
        match self {
            LineError::NoLines => "lines".into(),
            LineError::NoSuchProduct { index } | LineError::OtherCurrency { index, .. } => {
                format!("lines[{index}].product_id")
            }
            LineError::NegativePrice { index } => format!("lines[{index}].unit_price_minor"),
            LineError::Quantity { index } => format!("lines[{index}].quantity"),
        }
    }

    /// What is wrong with the field.
    pub fn message(&self) -> String {
        match self {
            LineError::NoLines => "a sale needs at least one line".into(),
            LineError::NoSuchProduct { .. } => "no such product".into(),
            LineError::OtherCurrency { priced_in, sells_in, .. } => {
                format!("priced in {priced_in}, the business sells in {sells_in}")
            }
            LineError::NegativePrice { .. } => "must not be negative".into(),
            LineError::Quantity { .. } => "must be at least 1".into(),
        }
    }
}

/// Why a sale's lines could not be priced: a line as asked is invalid, or
/// the amounts do not add up (an overflow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error(transparent)]
    Line(#[from] LineError),
    #[error(transparent)]
    Sale(#[from] SaleError),
}

/// Prices `lines` for a business selling in `currency`; `listed` finds a
/// product of the business in its catalogue (`None`: not the business's).
/// The first line at fault refuses the sale.
pub fn price<'a>(
    currency: Currency,
    lines: Vec<NewLine>,
    listed: impl Fn(i64) -> Option<Listed<'a>>,
) -> Result<PricedSale, PricingError> {
    if lines.is_empty() {
        return Err(LineError::NoLines.into());
    }
    let mut priced = Vec::with_capacity(lines.len());
    let mut for_total = Vec::with_capacity(lines.len());
    for (index, line) in lines.into_iter().enumerate() {
        let product = listed(line.product_id).ok_or(LineError::NoSuchProduct { index })?;
        if product.currency != currency.as_str() {
            return Err(
                LineError::OtherCurrency { index, priced_in: product.currency.to_owned(), sells_in: currency }.into()
            );
        }
        let unit = line.unit_price_minor.unwrap_or(product.unit_price_minor);
        if unit < 0 {
            return Err(LineError::NegativePrice { index }.into());
        }
        if line.quantity < 1 {
            return Err(LineError::Quantity { index }.into());
        }
        let for_line = PricedLine { quantity: line.quantity, unit_price: Money::new(unit, currency) };
        let line_total = for_line.total().map_err(|source| SaleError::Money { line: index + 1, source })?;
        priced.push(PricedSaleLine {
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price_minor: unit,
            line_total_minor: line_total.minor,
            requires_production: product.requires_production,
        });
        for_total.push(for_line);
    }
    let total = sale::sale_total(currency, &for_total)?;
    Ok(PricedSale { lines: priced, total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::money::MoneyError;

    fn usd() -> Currency {
        "USD".parse().unwrap()
    }

    fn line(product_id: i64, quantity: i32, unit_price_minor: Option<i64>) -> NewLine {
        NewLine { product_id, quantity, unit_price_minor }
    }

    /// Product 1: a saree at 2500 USD made to order; 2: a spool at 99 USD;
    /// 3: priced in INR.
    fn catalogue(id: i64) -> Option<Listed<'static>> {
        match id {
            1 => Some(Listed { unit_price_minor: 2500, currency: "USD", requires_production: true }),
            2 => Some(Listed { unit_price_minor: 99, currency: "USD", requires_production: false }),
            3 => Some(Listed { unit_price_minor: 100, currency: "INR", requires_production: false }),
            _ => None,
        }
    }

    #[test]
    fn lines_take_the_catalogue_price_unless_they_give_their_own() {
        let p = price(usd(), vec![line(1, 2, None), line(2, 3, Some(50))], catalogue).unwrap();
        assert_eq!(p.total, Money::new(5150, usd()));
        assert_eq!(
            p.lines,
            vec![
                PricedSaleLine {
                    product_id: 1,
                    quantity: 2,
                    unit_price_minor: 2500,
                    line_total_minor: 5000,
                    requires_production: true
                },
                PricedSaleLine {
                    product_id: 2,
                    quantity: 3,
                    unit_price_minor: 50,
                    line_total_minor: 150,
                    requires_production: false
                },
            ]
        );
    }

    #[test]
    fn a_free_line_is_allowed() {
        assert_eq!(price(usd(), vec![line(2, 1, Some(0))], catalogue).unwrap().total, Money::zero(usd()));
    }

    #[test]
    fn each_check_names_the_field_at_fault() {
        let refused = |lines| match price(usd(), lines, catalogue) {
            Err(PricingError::Line(e)) => (e.field(), e.message()),
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(vec![]), ("lines".into(), "a sale needs at least one line".into()));
        assert_eq!(
            refused(vec![line(2, 1, None), line(9, 1, None)]),
            ("lines[1].product_id".into(), "no such product".into())
        );
        assert_eq!(
            refused(vec![line(3, 1, None)]),
            ("lines[0].product_id".into(), "priced in INR, the business sells in USD".into())
        );
        assert_eq!(
            refused(vec![line(1, 1, Some(-1))]),
            ("lines[0].unit_price_minor".into(), "must not be negative".into())
        );
        assert_eq!(refused(vec![line(1, 0, None)]), ("lines[0].quantity".into(), "must be at least 1".into()));
    }

    #[test]
    fn the_error_reads_as_field_and_message() {
        let e = LineError::Quantity { index: 2 };
        assert_eq!(e.to_string(), format!("{}: {}", e.field(), e.message()));
    }

    #[test]
    fn an_overflowing_line_is_refused_with_its_number() {
        let e = price(usd(), vec![line(1, 2, Some(i64::MAX))], catalogue).unwrap_err();
        assert!(matches!(e, PricingError::Sale(SaleError::Money { line: 1, source: MoneyError::Overflow })), "{e:?}");
    }
}
