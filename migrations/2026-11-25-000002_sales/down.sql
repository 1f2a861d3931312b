DROP TABLE payments;
DROP TABLE sale_lines;
DROP TABLE sales;
DROP TABLE invoice_sequences;
DROP TABLE customers;
DROP TABLE products;
