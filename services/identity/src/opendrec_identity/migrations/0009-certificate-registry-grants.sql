-- Issue 14: certificates are transferred, retired and locked by the organizations that hold them (certificates'
-- registry: Write to start an operation, Update to accept, reject, cancel or release one). A Buyer organization's
-- administrator holds what its reservations were issued; a Developer organization's administrator may receive
-- transfers. Only the defaults an admin has not changed are raised.
UPDATE role_permissions SET actions = 'RWU'
WHERE module = 'CERTIFICATE_LOG_MANAGEMENT_CRUDL' AND role IN ('Buyer', 'OrganizationAdmin') AND actions = 'R';
