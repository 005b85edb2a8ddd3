from opendrec_kit import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "reservations"
    http_port: int = 8104
