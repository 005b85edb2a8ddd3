from opendrec_kit import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "devices"
    http_port: int = 8102
