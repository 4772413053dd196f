"""Account, ping and the configuration reads a client makes when it connects.

Besides what our client reads (upload path, key pair version), a general-purpose client's default
connect also reads the Active Directory and OpenID Connect login options, the system defaults and
the infrastructure properties; the emulated tenant has no AD or OIDC provider, no default
expirations, no SMS or media server, and is not DRACOON Cloud.
"""

from __future__ import annotations

from aiohttp import web

from .context import ctx, current_user
from .errors import json_response
from .model import KEY_PAIR_VERSIONS


async def user_account(request: web.Request) -> web.Response:
    """``GET /api/v4/user/account`` (the ``UserAccount`` fields a client may read)."""
    user = current_user(request)
    state = ctx(request).state
    manages = any(n.type == "room" and state.can(user.id, n, "manage") for n in state.nodes.values())
    return json_response(
        {
            "id": user.id,
            "customerId": 1,
            "userName": user.login,
            "login": user.login,
            "firstName": user.first_name,
            "lastName": user.last_name,
            "email": user.email,
            "isLocked": False,
            "lockStatus": 2,
            "hasManageableRooms": manages,
            "userRoles": {
                "items": [{"id": 4, "name": "ROOM_MANAGER", "description": "Room Manager"}]
                if user.room_manager
                else []
            },
            "language": "en-US",
            "authData": {"method": "basic", "login": user.login, "mustChangePassword": False},
            "mustSetEmail": False,
            "needsToAcceptEULA": False,
            "needsToChangePassword": False,
            "isEncryptionEnabled": bool(user.key_pairs),
            "userGroups": [],
        }
    )


async def ping(request: web.Request) -> web.Response:
    """``GET /api/v4/user/ping``: authenticated liveness, plain text."""
    return web.Response(text="test", content_type="text/plain")


async def system_info(request: web.Request) -> web.Response:
    """``GET /api/v4/public/system/info`` (no auth)."""
    cfg = ctx(request).config
    return json_response(
        {
            "languageDefault": "en-US",
            "hideLoginInputFields": False,
            "s3Hosts": [],
            "s3EnforceDirectUpload": cfg.s3_enforce_direct_upload,
            "useS3Storage": cfg.use_s3_storage,
            "authMethods": [{"name": "basic", "isEnabled": True, "priority": 1}],
        }
    )


async def active_directories(request: web.Request) -> web.Response:
    """``GET /api/v4/public/system/info/auth/ad`` (no auth): the login options; none configured."""
    return json_response({"items": []})


async def openid_providers(request: web.Request) -> web.Response:
    """``GET /api/v4/public/system/info/auth/openid`` (no auth): none configured."""
    return json_response({"items": []})


async def system_defaults(request: web.Request) -> web.Response:
    """``GET /api/v4/config/info/defaults``; an expiration period of 0 days means none."""
    return json_response(
        {
            "languageDefault": "en-US",
            "downloadShareDefaultExpirationPeriod": 0,
            "uploadShareDefaultExpirationPeriod": 0,
            "fileDefaultExpirationPeriod": 0,
            "nonmemberViewerDefault": False,
            "hideLoginInputFields": False,
        }
    )


async def infrastructure(request: web.Request) -> web.Response:
    """``GET /api/v4/config/info/infrastructure``."""
    c = ctx(request)
    return json_response(
        {
            "smsConfigEnabled": False,
            "mediaServerConfigEnabled": False,
            "s3DefaultRegion": "eu-central-1",
            "s3EnforceDirectUpload": c.config.s3_enforce_direct_upload,
            "isDracoonCloud": False,
            "tenantUuid": c.state.tenant_uuid,
        }
    )


async def general_info(request: web.Request) -> web.Response:
    """``GET /api/v4/config/info/general``."""
    cfg = ctx(request).config
    return json_response(
        {
            "sharePasswordSmsEnabled": False,
            "cryptoEnabled": cfg.crypto_enabled,
            "emailNotificationButtonEnabled": False,
            "eulaEnabled": False,
            "weakPasswordEnabled": False,
            "useS3Storage": cfg.use_s3_storage,
            "s3TagsEnabled": False,
            "homeRoomsActive": False,
        }
    )


async def algorithms(request: web.Request) -> web.Response:
    """``GET /api/v4/config/info/policies/algorithms``: the preferred key pair version is REQUIRED."""
    preferred = ctx(request).config.preferred_key_pair_version
    file_keys = {"A": "RSA-2048/AES-256-GCM", "RSA-4096": "RSA-4096/AES-256-GCM"}
    return json_response(
        {
            "keyPairAlgorithms": [
                {
                    "version": v,
                    "description": f"{'RSA-2048' if v == 'A' else v} asymmetric encryption",
                    "status": "REQUIRED" if v == preferred else "DISCOURAGED",
                }
                for v in reversed(KEY_PAIR_VERSIONS)
            ],
            "fileKeyAlgorithms": [
                {
                    "version": "RSA-4096/AES-256-GCM" if v == "RSA-4096" else "A",
                    "description": f"{file_keys[v]} file key encryption",
                    "status": "REQUIRED" if v == preferred else "DISCOURAGED",
                }
                for v in reversed(KEY_PAIR_VERSIONS)
            ],
        }
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v4/user/account", user_account, allow_head=False),
        web.get("/api/v4/user/ping", ping, allow_head=False),
        web.get("/api/v4/public/system/info", system_info, allow_head=False),
        web.get("/api/v4/public/system/info/auth/ad", active_directories, allow_head=False),
        web.get("/api/v4/public/system/info/auth/openid", openid_providers, allow_head=False),
        web.get("/api/v4/config/info/general", general_info, allow_head=False),
        web.get("/api/v4/config/info/defaults", system_defaults, allow_head=False),
        web.get("/api/v4/config/info/infrastructure", infrastructure, allow_head=False),
        web.get("/api/v4/config/info/policies/algorithms", algorithms, allow_head=False),
    ]
