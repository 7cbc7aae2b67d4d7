-- Values every instance sharing the database must agree on, such as the callback
-- signing secret generated at first start.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
