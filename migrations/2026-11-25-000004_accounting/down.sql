DROP TABLE account_transactions;
DROP TABLE accounts;
