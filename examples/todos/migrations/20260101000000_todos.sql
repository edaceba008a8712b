CREATE TABLE todos (
    id BIGSERIAL PRIMARY KEY,
    description TEXT NOT NULL,
    done BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE tags (
    todo_id BIGINT NOT NULL REFERENCES todos (id) ON DELETE CASCADE,
    tag TEXT NOT NULL
);
CREATE INDEX tags_todo_id ON tags (todo_id);
