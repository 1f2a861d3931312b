DROP TABLE canary_pings;
