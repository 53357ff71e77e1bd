"""api-gw: Envoy's routes and key checks, as volumes/api/envoy/lds.template.yaml has them.

Routes (first match wins) go to the services' testbed ports (TESTBED_UPSTREAMS, upstream's
cds.yaml). On each request, in the order of the template's filters:

1. basic auth (DASHBOARD_USERNAME/PASSWORD) on the Studio route only;
2. `?apikey=` copied into the apikey header when there is none (not on functions);
3. protected routes: 401 "Unauthorized" unless apikey is exactly ANON_KEY or
   SERVICE_ROLE_KEY, or, with translation enabled (all four of SUPABASE_PUBLISHABLE_KEY,
   SUPABASE_SECRET_KEY, ANON_KEY_ASYMMETRIC, SERVICE_ROLE_KEY_ASYMMETRIC set), one of the
   opaque keys; the *_ASYMMETRIC JWTs themselves are not client keys;
4. sb_ keys translated into the matching *_ASYMMETRIC JWT (header and query);
5. `Authorization: Bearer <apikey>` synthesised unless the request has a real JWT of its
   own (a bearer that is not an sb_ key); not on functions nor the realtime socket;
6. functions: sb_ keys go to the runtime as `sb-api-key`, an unknown sb_ key is a 401;
7. RBAC: /pg/ and the REST OpenAPI root only for the service role (SERVICE_ROLE_KEY or
   SERVICE_ROLE_KEY_ASYMMETRIC after translation), the other protected routes for the four
   JWT keys; realtime's tenants and openapi routes denied; refusals are 403.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass

from .service import Env, Service
from .web import Reply, Request, basic_auth_matches, http_call

OPEN, PROTECTED, DENIED, STUDIO = "open", "protected", "denied", "studio"


@dataclass(frozen=True)
class Route:
    name: str
    prefix: str
    service: str
    rewrite: str  # what replaces the prefix
    access: str
    exact: bool = False
    admin_only: bool = False  # the per-route RBAC of rest-v1-openapi-protected


ROUTES = (
    Route("auth-v1-open-verify", "/auth/v1/verify", "auth", "/verify", OPEN),
    Route("auth-v1-open-callback", "/auth/v1/callback", "auth", "/callback", OPEN),
    Route("auth-v1-open-authorize", "/auth/v1/authorize", "auth", "/authorize", OPEN),
    Route(
        "auth-v1-open-jwks",
        "/auth/v1/.well-known/jwks.json",
        "auth",
        "/.well-known/jwks.json",
        OPEN,
    ),
    Route("auth-v1-open-saml-acs", "/auth/v1/sso/saml/acs", "auth", "/sso/saml/acs", OPEN),
    Route(
        "auth-v1-open-saml-metadata",
        "/auth/v1/sso/saml/metadata",
        "auth",
        "/sso/saml/metadata",
        OPEN,
    ),
    Route("functions-v1-all", "/functions/v1/", "functions", "/", OPEN),
    Route("storage-v1-all", "/storage/v1/", "storage", "/", OPEN),
    Route("auth-v1-protected", "/auth/v1/", "auth", "/", PROTECTED),
    Route(
        "rest-v1-openapi-protected",
        "/rest/v1/",
        "rest",
        "/",
        PROTECTED,
        exact=True,
        admin_only=True,
    ),
    Route("rest-v1-protected", "/rest/v1/", "rest", "/", PROTECTED),
    Route("graphql-v1-protected", "/graphql/v1", "rest", "/rpc/graphql", PROTECTED),
    Route(
        "realtime-v1-api-openapi-blocked",
        "/realtime/v1/api/openapi",
        "realtime",
        "/realtime/v1/api/openapi",
        DENIED,
    ),
    Route(
        "realtime-v1-api-tenants-blocked",
        "/realtime/v1/api/tenants",
        "realtime",
        "/realtime/v1/api/tenants",
        DENIED,
    ),
    Route("realtime-v1-api-protected", "/realtime/v1/api", "realtime", "/api", PROTECTED),
    Route("realtime-v1-ws-protected", "/realtime/v1/", "realtime", "/socket/", PROTECTED),
    Route("pg-protected", "/pg/", "meta", "/", PROTECTED),
    Route("studio", "/", "studio", "/", STUDIO),
)
HOP_BY_HOP = {"host", "connection", "content-length", "keep-alive", "transfer-encoding"}


def match_route(path: str) -> Route:
    for route in ROUTES:
        if (path == route.prefix) if route.exact else path.startswith(route.prefix):
            return route
    return ROUTES[-1]


class Gateway(Service):
    def __init__(self, env: Env) -> None:
        super().__init__(env)
        # TESTBED_UPSTREAMS: "auth=http://127.0.0.1:55404,rest=..." (Envoy's cds.yaml)
        pairs = (item.split("=", 1) for item in self.env["TESTBED_UPSTREAMS"].split(","))
        self.upstreams = {name.strip(): url.strip() for name, url in pairs}
        e = self.env.get
        self.anon, self.service = e("ANON_KEY", ""), e("SERVICE_ROLE_KEY", "")
        self.publishable, self.secret = (
            e("SUPABASE_PUBLISHABLE_KEY", ""),
            e("SUPABASE_SECRET_KEY", ""),
        )
        self.anon_jwt, self.service_jwt = (
            e("ANON_KEY_ASYMMETRIC", ""),
            e("SERVICE_ROLE_KEY_ASYMMETRIC", ""),
        )
        self.translation = all((self.publishable, self.secret, self.anon_jwt, self.service_jwt))
        self.dashboard = f"{e('DASHBOARD_USERNAME', '')}:{e('DASHBOARD_PASSWORD', '')}"

    def health(self, _request: Request | None = None) -> Reply:
        return Reply(200, {"status": "ok"})  # the compose check only opens the port

    def is_valid_apikey(self, apikey: str | None) -> bool:
        if not apikey:
            return False
        valid = [self.service, self.anon]
        if self.translation:
            valid += [self.secret, self.publishable]
        return any(key and apikey == key for key in valid)

    def translate(self, apikey: str | None) -> str | None:
        if not apikey or not self.translation:
            return None
        return {self.secret: self.service_jwt, self.publishable: self.anon_jwt}.get(apikey)

    def rbac_allows(self, route: Route, apikey: str) -> bool:
        admins = [k for k in (self.service, self.service_jwt) if k]
        if route.admin_only or route.prefix == "/pg/":
            return apikey in admins
        return apikey in [
            k for k in (self.service, self.anon, self.service_jwt, self.anon_jwt) if k
        ]

    def resource(self, request: Request) -> Reply:
        route = match_route(request.path)
        headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
        target = request.target
        functions = route.name == "functions-v1-all"
        if route.access == STUDIO and not basic_auth_matches(request, self.dashboard):
            return Reply(
                401,
                "User authentication failed. Missing username and password.",
                {"WWW-Authenticate": 'Basic realm="http://localhost"'},
            )
        query_key = request.query.get("apikey")
        if not functions and not headers.get("apikey") and query_key:
            headers["apikey"] = query_key
        if route.access == PROTECTED and not self.is_valid_apikey(headers.get("apikey")):
            return Reply(401, "Unauthorized")
        if not functions:
            translated = self.translate(query_key)
            if translated:
                headers["apikey"] = translated
                target = re.sub(r"([?&])apikey=[^&]*", rf"\1apikey={translated}", target)
            translated = self.translate(headers.get("apikey"))
            if translated:
                headers["apikey"] = translated
        if route.name == "realtime-v1-ws-protected" and headers.get("apikey"):
            headers["x-api-key"] = headers["apikey"]
        bearer = request.bearer()
        has_real_jwt = bearer is not None and not bearer.startswith("sb_")
        socket_route = route.name == "realtime-v1-ws-protected"
        if not socket_route and not functions and not has_real_jwt and headers.get("apikey"):
            headers["authorization"] = "Bearer " + headers["apikey"]
        if functions:
            refusal = self.functions_key(headers, bearer)
            if refusal:
                return refusal
        if route.access == DENIED:
            return Reply(403, "RBAC: access denied")
        if route.access == PROTECTED and not self.rbac_allows(route, headers.get("apikey", "")):
            return Reply(403, "RBAC: access denied")
        if route.access == STUDIO:
            headers.pop("authorization", None)
        return self.forward(request.method, route, target, headers, request.body)

    def functions_key(self, headers: dict[str, str], bearer: str | None) -> Reply | None:
        headers.pop("sb-api-key", None)  # anti-spoof
        if not self.translation:
            return None
        apikey = headers.get("apikey")
        if not apikey and not bearer:
            return None
        if bearer and bearer.startswith("sb_") and apikey and apikey != bearer:
            return Reply(401, "Conflicting API keys")
        key = apikey or (bearer if bearer and bearer.startswith("sb_") else None)
        if not key or not key.startswith("sb_"):
            return None
        if key == self.secret:
            headers["sb-api-key"] = self.service_jwt
        elif key == self.publishable:
            headers["sb-api-key"] = self.anon_jwt
        else:
            return Reply(401, "Invalid API key")
        return None

    def forward(
        self, method: str, route: Route, target: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        path, _, query = target.partition("?")
        rest = path[len(route.prefix) :] if not route.exact else ""
        upstream_path = (
            (route.rewrite.rstrip("/") + "/" + rest.lstrip("/")) if rest else route.rewrite
        )
        if route.access == DENIED or route.service == "studio":
            upstream_path = path
        url = self.upstreams[route.service] + urllib.parse.quote(upstream_path, safe="/%:@.-_~")
        if query:
            url += "?" + query
        status, data, upstream_headers = http_call(method, url, headers, body or None)
        names = {"content-type": "Content-Type", "content-range": "Content-Range"}
        passed = {names[k]: v for k, v in upstream_headers.items() if k in names}
        ctype = upstream_headers.get("content-type", "")
        if "json" in ctype:
            try:
                return Reply(status, json.loads(data) if data else None, passed)
            except ValueError:
                pass
        return Reply(status, data.decode(errors="replace"), passed)
