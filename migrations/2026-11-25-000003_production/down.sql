DROP TABLE production_steps;
DROP TABLE production_orders;
DROP TABLE production_step_templates;
