DROP TABLE atelier_migration_repairs;
DROP TABLE atelier_migrations;
