DROP TABLE users;
DROP TABLE locations;
DROP TABLE businesses;
