-- Developer and Buyer organizations an API user registered and acts for.

ALTER TABLE organizations ADD COLUMN api_user_id uuid REFERENCES api_users (id);

CREATE INDEX organizations_api_user ON organizations (api_user_id) WHERE api_user_id IS NOT NULL;
