-- An Admin deletes an organization (DELETE /api/admin/organizations/{id}): the row stays, marked Deleted, so that
-- its users (marked Deleted too), its invitations and the other services' records keep pointing at something.

ALTER TABLE organizations DROP CONSTRAINT organizations_status_check;
ALTER TABLE organizations ADD CONSTRAINT organizations_status_check
    CHECK (status IN ('Submitted', 'Denied', 'Active', 'Deleted'));
