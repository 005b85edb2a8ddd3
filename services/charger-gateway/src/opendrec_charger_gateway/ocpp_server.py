"""The OCPP 1.6J central system (adapter): charge points connect to `ws://…/ocpp/{chargePointId}` with the
subprotocol `ocpp1.6` and HTTP Basic credentials (their id and the password answered when they were linked:
security profile 1; profile 2 is the same behind TLS, `wss://`, in production). Each message is parsed and
answered by the `ocpp` library and handled by one use case in `services` (each in its own unit of work).

Refused at the upgrade (HTTP 403, before any OCPP message): no `ocpp1.6` subprotocol, missing or wrong
credentials, a user that is not the charge point of the path, a charge point not linked. An address held back
after wrong passwords (`domain.PasswordThrottle`) gets 429 with Retry-After before its password is checked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Path, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from ocpp.exceptions import FormatViolationError, InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

from opendrec_kit import UnitOfWork
from opendrec_kit.addresses import client_address

from . import domain, services
from .api import CHARGER_ID

log = logging.getLogger(__name__)
router = APIRouter()

SUBPROTOCOL = "ocpp1.6"
HEARTBEAT_INTERVAL_S = 300
T = TypeVar("T")


class _Connection:
    """What the ocpp library needs of a connection: recv and send of text frames."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def recv(self) -> str:
        return await self.websocket.receive_text()

    async def send(self, message: str) -> None:
        await self.websocket.send_text(message)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _time(text: str) -> datetime:
    try:
        return domain.ocpp_time(text)
    except ValueError as exc:
        raise FormatViolationError(description=str(exc)) from None


class CentralSystemPoint(ChargePoint):
    """One connected charge point, as the central system sees it."""

    def __init__(self, charger_id: str, connection: _Connection, uow: Callable[[], UnitOfWork]) -> None:
        super().__init__(charger_id, connection)
        self.uow = uow

    async def _handled(self, work: Awaitable[T]) -> T:
        # A failure of ours (e.g. the database away) answers InternalError: the charge point keeps the message
        # and sends it again (transaction messages are queued by the specification), nothing is lost.
        try:
            return await work
        except Exception as exc:
            log.exception("ocpp message not handled", extra={"charger_id": self.id})
            raise InternalError(description=type(exc).__name__) from exc

    @on(Action.boot_notification)
    async def on_boot(self, charge_point_vendor: str, charge_point_model: str, **fields: Any) -> Any:
        linked = await self._handled(
            services.ocpp_boot(
                self.uow(), self.id, charge_point_vendor, charge_point_model, fields.get("firmware_version")
            )
        )
        status = RegistrationStatus.accepted if linked else RegistrationStatus.rejected
        return call_result.BootNotification(current_time=_now(), interval=HEARTBEAT_INTERVAL_S, status=status)

    @on(Action.heartbeat)
    async def on_heartbeat(self) -> Any:
        await self._handled(services.ocpp_heard(self.uow(), self.id))
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    async def on_status(self, connector_id: int, error_code: str, status: str, **fields: Any) -> Any:
        at = _time(fields["timestamp"]) if fields.get("timestamp") else datetime.now(UTC)
        await self._handled(
            services.ocpp_status(self.uow(), self.id, connector_id, status, error_code, fields.get("info"), at)
        )
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> Any:
        # Id tags are the charger operator's business (who may charge); OpenDREC counts the energy of every one.
        return call_result.Authorize(id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted))

    @on(Action.start_transaction)
    async def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any) -> Any:
        started = _time(timestamp)
        transaction_id = await self._handled(
            services.ocpp_start(self.uow(), self.id, connector_id, id_tag, meter_start, started)
        )
        if transaction_id is None:
            return call_result.StartTransaction(
                transaction_id=0, id_tag_info=IdTagInfo(status=AuthorizationStatus.invalid)
            )
        return call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted)
        )

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]], **fields: Any) -> Any:
        await self._handled(services.ocpp_meter_values(self.uow(), self.id, fields.get("transaction_id"), meter_value))
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int, **_: Any) -> Any:
        await self._handled(services.ocpp_stop(self.uow(), self.id, transaction_id, meter_stop, _time(timestamp)))
        return call_result.StopTransaction(id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted))


async def _refuse(websocket: WebSocket, charger_id: str, address: str, wait: float) -> None:
    """Refused at the upgrade: 403 for wrong credentials; 429 with Retry-After while the address is held back by
    wrong passwords (403 too where the server cannot answer an upgrade with a response of its own)."""
    if not wait:
        log.warning("ocpp connection refused: unknown charge point or wrong password", extra={"id": charger_id})
        await websocket.close(code=1008, reason="unknown charge point or wrong password")
        return
    log.warning("ocpp connection held back after wrong passwords", extra={"id": charger_id, "address": address})
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        await websocket.close(code=1008, reason="too many wrong passwords: try again later")
        return
    retry_after = str(max(1, math.ceil(wait)))
    await websocket.send_denial_response(
        JSONResponse(
            {"statusCode": 429, "message": f"Too many wrong passwords: try again in {retry_after} s"},
            status_code=429,
            headers={"Retry-After": retry_after},
        )
    )


@router.websocket("/ocpp/{chargePointId}")
async def central_system(websocket: WebSocket, chargePointId: str = Path(max_length=64, pattern=CHARGER_ID)) -> None:
    runtime = websocket.app.state.runtime
    if SUBPROTOCOL not in websocket.scope.get("subprotocols", []):
        await websocket.close(code=1002, reason="the ocpp1.6 subprotocol is required")
        return
    credentials = domain.parse_basic_auth(websocket.headers.get("authorization"))
    address = client_address(
        websocket.client.host if websocket.client else None,
        websocket.headers.get("x-forwarded-for"),
        websocket.app.state.ocpp_trusted_proxies,
    )
    wait: float | None = 0.0  # no credentials, or another charge point's: refused, nothing to check
    if credentials is not None and credentials[0] == chargePointId:
        throttle = websocket.app.state.ocpp_throttle
        wait = await services.ocpp_authenticate(runtime.uow(), throttle, chargePointId, credentials[1], address)
    if wait is not None:
        await _refuse(websocket, chargePointId, address, wait)
        return
    await websocket.accept(subprotocol=SUBPROTOCOL)
    point = CentralSystemPoint(chargePointId, _Connection(websocket), runtime.uow)
    log.info("ocpp charge point connected", extra={"charger_id": chargePointId})
    try:
        await point.start()
    except WebSocketDisconnect:
        log.info("ocpp charge point disconnected", extra={"charger_id": chargePointId})
