-- Grants are administered one by one (/api/permission/{id}): role and user grants share one id
-- space, so an id names exactly one grant whichever table holds it.

CREATE SEQUENCE grant_ids;

-- A volatile default is evaluated per row: existing grants get ids too.
ALTER TABLE role_permissions ADD COLUMN id bigint NOT NULL DEFAULT nextval('grant_ids') UNIQUE;
ALTER TABLE user_permissions ADD COLUMN id bigint NOT NULL DEFAULT nextval('grant_ids') UNIQUE;
