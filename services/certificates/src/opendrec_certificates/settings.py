from opendrec_kit import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "certificates"
    http_port: int = 8105
