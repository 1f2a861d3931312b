DROP TABLE notification_templates;
DROP TABLE leads;
DROP TABLE social_messages;
DROP TABLE social_channels;
