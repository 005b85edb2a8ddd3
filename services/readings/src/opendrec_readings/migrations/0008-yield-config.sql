-- Issue 15. D-REC's yield configuration (/api/yield/config): one annual yield (kWh per kWp per year) per
-- country, set by an Admin. An Active ('Y') row is the country's yield in the plausibility bound of reads,
-- in place of the COUNTRY_YIELDS setting's value for that country; a device's own yield still wins.
CREATE TABLE yield_configs (
    id            serial           PRIMARY KEY,
    country_code  text             NOT NULL UNIQUE CHECK (country_code ~ '^[A-Z]{3}$'),
    country_name  text             NOT NULL CHECK (length(country_name) BETWEEN 1 AND 200),
    yield_value   double precision NOT NULL CHECK (yield_value > 0 AND yield_value <= 3000),
    status        text             NOT NULL DEFAULT 'Y' CHECK (status IN ('Y', 'N')),
    created_by    integer,
    updated_by    integer,
    created_at    timestamptz      NOT NULL DEFAULT now(),
    updated_at    timestamptz      NOT NULL DEFAULT now()
);
