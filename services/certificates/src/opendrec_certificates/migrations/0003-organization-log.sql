-- The certificate log of an organization (GET /api/certificate-log/issuer/certifiedlogOfdevices):
-- a developer's certificates by device owner, a buyer's by buyer organization, in page order.
CREATE INDEX certificates_owner ON certificates (owner_organization_id, reservation_id DESC, generation_start, id);
CREATE INDEX certificates_buyer ON certificates (buyer_organization_id, reservation_id DESC, generation_start, id);
