-- Roles, ACL modules and what each role may do in each module (data, so an admin can change it).

CREATE TABLE roles (
    name        text PRIMARY KEY,
    description text NOT NULL
);

INSERT INTO roles (name, description) VALUES
    ('Admin',             'Platform administrator: every action of every module'),
    ('OrganizationAdmin', 'Administers a Developer organization'),
    ('DeviceOwner',       'Manages the devices and reads of a Developer organization'),
    ('Buyer',             'Administers a Buyer organization'),
    ('SubBuyer',          'Makes reservations for a Buyer organization'),
    ('User',              'Organization member who can look but not change'),
    ('ApiUser',           'Integrator acting for its own Developer and Buyer organizations');

-- actions: the permission letters a module offers, always in RWUD order (Read, Write, Update, Delete).
CREATE TABLE acl_modules (
    id          serial PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    description text        NOT NULL DEFAULT '',
    actions     text        NOT NULL DEFAULT 'RWUD' CHECK (actions ~ '^R?W?U?D?$' AND actions <> ''),
    status      text        NOT NULL DEFAULT 'Enable' CHECK (status IN ('Enable', 'Disable')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO acl_modules (name, description) VALUES
    ('USER_MANAGEMENT_CRUDL',              'Users and their profiles'),
    ('DEVICE_MANAGEMENT_CRUDL',            'Devices'),
    ('READS_MANAGEMENT_CRUDL',             'Meter reads'),
    ('BUYER_RESERVATION_MANAGEMENT_CRUDL', 'Buyer reservations (device groups)'),
    ('CERTIFICATE_LOG_MANAGEMENT_CRUDL',   'Certificate logs'),
    ('DEVICE_BULK_MANAGEMENT_CRUDL',       'Bulk device uploads'),
    ('INVITATION_MANAGEMENT_CRUDL',        'Invitations to an organization'),
    ('PASSWORD_MANAGEMENT_CRUDL',          'Passwords'),
    ('ORGANIZATION_MANAGEMENT_CRUDL',      'Organizations and their members'),
    ('PERMISSION_MANAGEMENT_CRUDL',        'Role and user permissions'),
    ('ACL_MODULE_MANAGEMENT_CRUDL',        'ACL modules');

-- Default grants per role. Admin needs no rows: it holds every action of every enabled module.
-- ApiUser has none until an admin approves its permission requests.
CREATE TABLE role_permissions (
    role    text NOT NULL REFERENCES roles (name),
    module  text NOT NULL REFERENCES acl_modules (name) ON UPDATE CASCADE ON DELETE CASCADE,
    actions text NOT NULL CHECK (actions ~ '^R?W?U?D?$' AND actions <> ''),
    PRIMARY KEY (role, module)
);

INSERT INTO role_permissions (role, module, actions) VALUES
    -- a Developer organization's administrator
    ('OrganizationAdmin', 'DEVICE_MANAGEMENT_CRUDL',            'RWUD'),
    ('OrganizationAdmin', 'READS_MANAGEMENT_CRUDL',             'RWUD'),
    ('OrganizationAdmin', 'DEVICE_BULK_MANAGEMENT_CRUDL',       'RWUD'),
    ('OrganizationAdmin', 'CERTIFICATE_LOG_MANAGEMENT_CRUDL',   'R'),
    ('OrganizationAdmin', 'USER_MANAGEMENT_CRUDL',              'RWU'),
    ('OrganizationAdmin', 'ORGANIZATION_MANAGEMENT_CRUDL',      'RWU'),
    ('OrganizationAdmin', 'INVITATION_MANAGEMENT_CRUDL',        'RWU'),
    ('OrganizationAdmin', 'PASSWORD_MANAGEMENT_CRUDL',          'RWU'),
    -- a Buyer organization's administrator
    ('Buyer',             'BUYER_RESERVATION_MANAGEMENT_CRUDL', 'RWUD'),
    ('Buyer',             'CERTIFICATE_LOG_MANAGEMENT_CRUDL',   'R'),
    ('Buyer',             'DEVICE_MANAGEMENT_CRUDL',            'R'),
    ('Buyer',             'READS_MANAGEMENT_CRUDL',             'R'),
    ('Buyer',             'USER_MANAGEMENT_CRUDL',              'RWU'),
    ('Buyer',             'ORGANIZATION_MANAGEMENT_CRUDL',      'RWU'),
    ('Buyer',             'INVITATION_MANAGEMENT_CRUDL',        'RWU'),
    ('Buyer',             'PASSWORD_MANAGEMENT_CRUDL',          'RWU'),
    -- a Developer member who runs devices: no deleting, no member management
    ('DeviceOwner',       'DEVICE_MANAGEMENT_CRUDL',            'RWU'),
    ('DeviceOwner',       'READS_MANAGEMENT_CRUDL',             'RWU'),
    ('DeviceOwner',       'DEVICE_BULK_MANAGEMENT_CRUDL',       'RW'),
    ('DeviceOwner',       'CERTIFICATE_LOG_MANAGEMENT_CRUDL',   'R'),
    ('DeviceOwner',       'USER_MANAGEMENT_CRUDL',              'R'),
    ('DeviceOwner',       'ORGANIZATION_MANAGEMENT_CRUDL',      'R'),
    ('DeviceOwner',       'PASSWORD_MANAGEMENT_CRUDL',          'RWU'),
    -- a Buyer member who makes reservations: no deleting, no member management
    ('SubBuyer',          'BUYER_RESERVATION_MANAGEMENT_CRUDL', 'RWU'),
    ('SubBuyer',          'CERTIFICATE_LOG_MANAGEMENT_CRUDL',   'R'),
    ('SubBuyer',          'DEVICE_MANAGEMENT_CRUDL',            'R'),
    ('SubBuyer',          'READS_MANAGEMENT_CRUDL',             'R'),
    ('SubBuyer',          'USER_MANAGEMENT_CRUDL',              'R'),
    ('SubBuyer',          'ORGANIZATION_MANAGEMENT_CRUDL',      'R'),
    ('SubBuyer',          'PASSWORD_MANAGEMENT_CRUDL',          'RWU'),
    -- any other member: reads only, and their own password
    ('User',              'DEVICE_MANAGEMENT_CRUDL',            'R'),
    ('User',              'READS_MANAGEMENT_CRUDL',             'R'),
    ('User',              'CERTIFICATE_LOG_MANAGEMENT_CRUDL',   'R'),
    ('User',              'USER_MANAGEMENT_CRUDL',              'R'),
    ('User',              'ORGANIZATION_MANAGEMENT_CRUDL',      'R'),
    ('User',              'PASSWORD_MANAGEMENT_CRUDL',          'RWU');
