//! Money: integer minor units (cents, paise) with an ISO 4217 currency code.
//! Never floats; every operation is checked and refuses mixed currencies.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A three-letter, upper-case ISO 4217 code such as `USD` or `INR`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn as_str(&self) -> &str {
        // Always three ASCII upper-case letters: checked on construction.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(MoneyError::InvalidCurrency(s.chars().take(16).collect()))
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("'{0}' is not a currency code: expected three upper-case letters such as USD")]
    InvalidCurrency(String),
    #[error("cannot combine {0} with {1}: amounts must share one currency")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
    #[error("amount must not be negative")]
    Negative,
}

/// An amount in minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self.minor.checked_sub(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    pub fn checked_mul(self, quantity: i64) -> Result<Money, MoneyError> {
        let minor = self.minor.checked_mul(quantity).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    /// Refuses a negative amount (prices, costs and payments are never negative).
    pub fn non_negative(self) -> Result<Money, MoneyError> {
        if self.minor < 0 { Err(MoneyError::Negative) } else { Ok(self) }
    }
}

impl fmt::Display for Money {
    /// `12.34 USD`-style, assuming two decimal places (used in messages to customers).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd() -> Currency {
        "USD".parse().unwrap()
    }

    #[test]
    fn currency_codes_are_three_upper_case_letters() {
        assert!("INR".parse::<Currency>().is_ok());
        for bad in ["usd", "US", "USDD", "U$D", ""] {
            assert!(bad.parse::<Currency>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn mixed_currencies_are_refused() {
        let inr: Currency = "INR".parse().unwrap();
        let err = Money::new(1, usd()).checked_add(Money::new(1, inr)).unwrap_err();
        assert_eq!(err, MoneyError::CurrencyMismatch(usd(), inr));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(Money::new(i64::MAX, usd()).checked_add(Money::new(1, usd())), Err(MoneyError::Overflow));
        assert_eq!(Money::new(i64::MAX, usd()).checked_mul(2), Err(MoneyError::Overflow));
    }

    #[test]
    fn displays_minor_units_with_two_decimals() {
        assert_eq!(Money::new(12345, usd()).to_string(), "123.45 USD");
        assert_eq!(Money::new(-5, usd()).to_string(), "-0.05 USD");
    }

    proptest! {
        #[test]
        fn add_then_sub_round_trips(a in -1_000_000_000i64..1_000_000_000, b in -1_000_000_000i64..1_000_000_000) {
            let sum = Money::new(a, usd()).checked_add(Money::new(b, usd())).unwrap();
            prop_assert_eq!(sum.checked_sub(Money::new(b, usd())).unwrap(), Money::new(a, usd()));
        }
    }
}
