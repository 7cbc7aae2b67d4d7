-- Values every instance sharing the database must agree on, such as the callback
-- signing secret generated at first start (first INSERT wins; the others read it).
CREATE TABLE settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);
