DROP TABLE account_audit;
DROP TABLE login_throttle;
