"""A mixed load of residents against running web nodes (asyncio + httpx2), for tests/ops/test_load.py.

Each virtual client is one resident with one browser, behind its own client address (the
TLS proxy's `X-Forwarded-For`, as each resident is a different machine), sending every
request to a node picked at random (a load balancer without sticky sessions). Until the
deadline it repeats, one operation at a time, picked by weight (`WEIGHTS`), after a first
pass through each of them:

- `signin`: the returning resident whose session ended: GET /connexion/, POST the form
  (CSRF, Argon2id check) -> session cookie. Every client starts with one.
- `authorize_token`: GET /authorize (PKCE S256, signed-in session) -> code -> POST /token ->
  access, ID and refresh tokens (the internal service's one-time information page is
  acknowledged with its "Continuer" when it shows).
- `refresh`: POST /token grant refresh_token; the refresh token must rotate.
- `userinfo`: GET /userinfo with the access token.
- `consent_decision`: Mon compte › Consentements: POST grant or withdraw of one purpose
  (CSRF), acknowledged by the redirect; then the page, whose new "Référence" is the ledger
  event's id.
- `cookie_choices`: the cookie widget of a partner site: POST /consent/api/v1/cookie/choices
  (cross-origin, the browser's id and secret after the first) -> 201 with `receipt_ids`.
- `privacy_centre`: one of the Mon compte pages (GET).

Every response is checked: a 5xx is counted as such, any other unexpected answer as an
error, each with a sample. Every consent event acknowledged to a client (a receipt id or a
page reference) is returned, for the caller to look up in the ledger.

httpx is not a dependency of the project; httpx2 is (scim2-client[httpx2]) and has its API.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import logging
import random
import re
import secrets
import time
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx2

logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per request otherwise

REDIRECT_URI = "https://rp.ops.example/callback"
PARTNER_ORIGIN = "https://partenaire.ops.example"
LOOPBACK = "127.0.0.1"
FORM = "application/x-www-form-urlencoded"

WEIGHTS: dict[str, int] = {
    "signin": 1,
    "authorize_token": 3,
    "refresh": 3,
    "userinfo": 4,
    "consent_decision": 2,
    "cookie_choices": 2,
    "privacy_centre": 3,
}
FIRST_PASS_GRACE = 120.0
PRIVACY_CENTRE_PAGES = (
    "/compte/",
    "/compte/consentements/",
    "/compte/services/",
    "/compte/personnalisation/",
    "/compte/sessions/",
    "/compte/informations/",
)
# Mon compte › Consentements: the metropolis' own consent-based purposes.
DECISION_PURPOSES = ("personalisation-declared", "personalisation-browsing", "service-news-email")
_REFERENCE = re.compile(r"<code>([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})</code>")
_PENDING = re.compile(r'name="pending" value="([^"]+)"')


@dataclass
class MixConfig:
    base_urls: list[str]
    residents: list[str]  # one per virtual client
    password: str
    code_client_id: str
    code_client_secret: str
    widget_client_id: str
    cookie_purposes: list[str]
    duration: float
    seed: int = 0
    timeout: float = 120.0


@dataclass
class MixResult:
    duration: float
    clients: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: list[str] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # ledger event id -> operation
    requests: int = 0

    def record_problem(self, kind: str, sample: str, *, server_error: bool = False) -> None:
        (self.server_errors if server_error else self.errors)[kind] += 1
        if len(self.samples) < 20:
            self.samples.append(sample[:400])

    def table(self) -> str:
        """A Markdown table: per operation, count, rate, latency percentiles, errors."""

        def pct(values: list[float], p: float) -> float:
            return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] * 1000 if values else 0.0

        lines = [
            "| operation | done | per s | p50 ms | p95 ms | p99 ms | max ms | errors | 5xx |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        total = 0
        for name in WEIGHTS:
            values = sorted(self.latencies.get(name, []))
            total += len(values)
            lines.append(
                f"| {name} | {len(values)} | {len(values) / self.duration:.1f} | {pct(values, 50):.0f} "
                f"| {pct(values, 95):.0f} | {pct(values, 99):.0f} | {pct(values, 100):.0f} "
                f"| {self.errors.get(name, 0)} | {self.server_errors.get(name, 0)} |"
            )
        lines.append(
            f"| all | {total} | {total / self.duration:.1f} | | | | | {sum(self.errors.values())} "
            f"| {sum(self.server_errors.values())} |"
        )
        lines.append("")
        lines.append(
            f"{self.clients} clients, {self.duration:.0f} s, {self.requests} HTTP requests "
            f"({self.requests / self.duration:.0f}/s), {len(self.acknowledged)} consent events acknowledged."
        )
        return "\n".join(lines)


class _LoopbackCookiePolicy(DefaultCookiePolicy):
    """The service sets `Secure` (__Host-) cookies; TLS ends at the proxy, which we play."""

    def return_ok_secure(self, cookie: Any, request: Any) -> bool:
        return True


class Unexpected(Exception):
    """An answer the operation did not expect (`server_error` when it was a 5xx)."""

    def __init__(self, message: str, *, server_error: bool = False) -> None:
        super().__init__(message)
        self.server_error = server_error


class Resident:
    """One virtual client: a resident's browser, plus the partner service acting for it."""

    def __init__(self, index: int, config: MixConfig, result: MixResult, rng: random.Random) -> None:
        self.config = config
        self.result = result
        self.rng = rng
        self.email = config.residents[index]
        # A distinct public address per resident (10.0.0.0/8), appended by our one TLS proxy.
        self.address = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256 + 1}"
        self.http = httpx2.AsyncClient(
            cookies=CookieJar(policy=_LoopbackCookiePolicy()),
            timeout=config.timeout,
            # The public name the load balancer forwards, whichever node answers.
            headers={"Host": LOOPBACK, "X-Forwarded-Proto": "https", "X-Forwarded-For": self.address},
            follow_redirects=False,
        )
        self.signed_in = False
        self.access_token = ""
        self.refresh_token = ""
        self.granted: dict[str, bool] = dict.fromkeys(DECISION_PURPOSES, False)
        self.references: set[str] = set()
        self.browser_id = ""
        self.browser_secret = ""
        self.first_pass = ["refresh", "userinfo", "consent_decision", "cookie_choices", "privacy_centre"]

    # --- HTTP -----------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return self.rng.choice(self.config.base_urls) + path

    async def request(
        self, method: str, path: str, expect: tuple[int, ...], **kwargs: Any
    ) -> httpx2.Response:
        self.result.requests += 1
        try:
            response = await self.http.request(method, self._url(path), **kwargs)
        except httpx2.HTTPError as exc:
            raise Unexpected(f"{method} {path.split('?')[0]}: {type(exc).__name__} {exc}") from exc
        if response.status_code >= 500:
            raise Unexpected(
                f"{method} {path.split('?')[0]}: HTTP {response.status_code} {response.text[:200]!r}",
                server_error=True,
            )
        if response.status_code not in expect:
            raise Unexpected(
                f"{method} {path.split('?')[0]}: HTTP {response.status_code} {response.text[:200]!r}"
            )
        return response

    def _csrf(self) -> str:
        """A CSRF secret in the cookie and the form, as the page would have set (the check is real)."""
        token = secrets.token_hex(16)
        for name in ("__Host-csrf", "csrf"):
            self.http.cookies.set(name, token, domain=LOOPBACK, path="/")
        return token

    def _origin(self) -> dict[str, str]:
        return {"Origin": f"https://{LOOPBACK}"}

    # --- operations -------------------------------------------------------------------------
    async def signin(self) -> None:
        jar = self.http.cookies.jar
        for cookie in [c for c in jar if "session" in c.name]:  # the session ended
            jar.clear(cookie.domain, cookie.path, cookie.name)
        page = await self.request("GET", "/connexion/?next=/compte/", (200,))
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if token is None:
            raise Unexpected("GET /connexion/: no CSRF field")
        answer = await self.request(
            "POST",
            "/connexion/",
            (302,),
            data={"username": self.email, "password": self.config.password, "next": "/compte/",
                  "csrfmiddlewaretoken": token.group(1)},
            headers=self._origin(),
        )  # fmt: skip
        if not any("session" in name for name in answer.cookies):
            raise Unexpected(f"POST /connexion/: no session cookie (to {answer.headers.get('location')})")
        self.signed_in = True

    async def authorize_token(self) -> None:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(12)
        params = {
            "response_type": "code",
            "client_id": self.config.code_client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email",
            "state": state,
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        answer = await self.request("GET", "/authorize", (200, 302, 303), params=params)
        if answer.status_code == 200:
            pending = _PENDING.search(answer.text)
            if pending is None:
                raise Unexpected(f"GET /authorize: a page without the information form {answer.text[:200]!r}")
            answer = await self.request(
                "POST",
                "/authorize/information",
                (302, 303),
                data={"pending": pending.group(1), "csrfmiddlewaretoken": self._csrf()},
                headers=self._origin(),
            )
        location = answer.headers.get("location", "")
        query = parse_qs(urlsplit(location).query)
        if not location.startswith(REDIRECT_URI) or query.get("state") != [state] or "code" not in query:
            raise Unexpected(f"GET /authorize: redirected to {location[:160]!r}")
        token = await self.request(
            "POST",
            "/token",
            (200,),
            data={"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT_URI,
                  "code_verifier": verifier},
            headers={"Authorization": self._basic()},
        )  # fmt: skip
        data = token.json()
        if not (data.get("access_token") and data.get("id_token") and data.get("refresh_token")):
            raise Unexpected(f"POST /token: incomplete answer {sorted(data)}")
        self.access_token, self.refresh_token = data["access_token"], data["refresh_token"]

    def _basic(self) -> str:
        raw = f"{quote(self.config.code_client_id, safe='')}:{quote(self.config.code_client_secret, safe='')}"
        return "Basic " + base64.b64encode(raw.encode()).decode()

    async def refresh(self) -> None:
        answer = await self.request(
            "POST",
            "/token",
            (200,),
            data={"grant_type": "refresh_token", "refresh_token": self.refresh_token},
            headers={"Authorization": self._basic()},
        )
        data = answer.json()
        if not data.get("refresh_token") or data["refresh_token"] == self.refresh_token:
            raise Unexpected("POST /token (refresh): the refresh token was not rotated")
        self.access_token, self.refresh_token = data["access_token"], data["refresh_token"]

    async def userinfo(self) -> None:
        answer = await self.request(
            "GET", "/userinfo", (200,), headers={"Authorization": f"Bearer {self.access_token}"}
        )
        if "sub" not in answer.json():
            raise Unexpected("GET /userinfo: no sub")

    async def consent_decision(self) -> list[str]:
        code = self.rng.choice(DECISION_PURPOSES)
        grant = not self.granted[code]
        answer = await self.request(
            "POST",
            f"/compte/consentements/{code}/decision/",
            (302,),
            data={"decision": "grant" if grant else "withdraw", "csrfmiddlewaretoken": self._csrf()},
            headers=self._origin(),
        )
        if not answer.headers.get("location", "").startswith("/compte/consentements/"):
            raise Unexpected(f"POST decision: redirected to {answer.headers.get('location')!r}")
        self.granted[code] = grant
        page = await self.request("GET", "/compte/consentements/", (200,))
        shown = set(_REFERENCE.findall(page.text))
        new = shown - self.references
        self.references |= shown
        if len(new) != 1:
            raise Unexpected(f"consents page: {len(new)} new references after one decision")
        return sorted(new)

    async def cookie_choices(self) -> list[str]:
        body: dict[str, Any] = {
            "client_id": self.config.widget_client_id,
            "choices": {code: self.rng.random() < 0.5 for code in self.config.cookie_purposes},
        }
        if self.browser_id:
            body.update(browser_id=self.browser_id, browser_secret=self.browser_secret)
        answer = await self.request(
            "POST", "/consent/api/v1/cookie/choices", (201,), json=body, headers={"Origin": PARTNER_ORIGIN}
        )
        data = answer.json()
        if not self.browser_id:
            self.browser_id, self.browser_secret = data["browser_id"], data["browser_secret"]
        ids = list(data.get("receipt_ids") or [])
        if len(ids) != len(body["choices"]):
            raise Unexpected(f"cookie choices: {len(ids)} receipts for {len(body['choices'])} choices")
        return ids

    async def privacy_centre(self) -> None:
        await self.request("GET", self.rng.choice(PRIVACY_CENTRE_PAGES), (200,))

    # --- the loop -------------------------------------------------------------------------------
    def _next(self) -> str:
        if not self.signed_in:
            return "signin"
        if not self.refresh_token:
            return "authorize_token"
        if self.first_pass:
            return self.first_pass.pop(0)
        names = list(WEIGHTS)
        return self.rng.choices(names, weights=[WEIGHTS[n] for n in names])[0]

    def _going_on(self, deadline: float) -> bool:
        now = time.monotonic()
        if now < deadline:
            return True
        return bool(self.first_pass) and bool(self.refresh_token) and now < deadline + FIRST_PASS_GRACE

    async def run(self, deadline: float) -> None:
        try:
            # Each resident goes through every operation once, then picks by weight until the
            # deadline: every operation is exercised even when a slow machine makes the run short
            # (a signed-in resident's first pass may overrun the deadline, by at most
            # FIRST_PASS_GRACE seconds; one that cannot even sign in stops at the deadline).
            while self._going_on(deadline):
                name = self._next()
                started = time.perf_counter()
                try:
                    acknowledged = await getattr(self, name)()
                except Unexpected as exc:
                    self.result.record_problem(name, f"{name}: {exc}", server_error=exc.server_error)
                    if name == "signin":
                        await asyncio.sleep(1)  # do not spin on a failing sign-in
                    continue
                except (ValueError, KeyError) as exc:  # a body that is not the JSON expected
                    self.result.record_problem(name, f"{name}: {type(exc).__name__} {exc}")
                    continue
                self.result.latencies[name].append(time.perf_counter() - started)
                for event_id in acknowledged or ():
                    self.result.acknowledged[event_id] = name
        finally:
            await self.http.aclose()


async def run_mix(config: MixConfig) -> MixResult:
    """Run len(config.residents) concurrent clients for config.duration seconds."""
    result = MixResult(duration=config.duration, clients=len(config.residents))
    master = random.Random(config.seed)
    clients = [
        Resident(index, config, result, random.Random(master.random()))
        for index in range(len(config.residents))
    ]
    started = time.monotonic()
    await asyncio.gather(*(client.run(started + config.duration) for client in clients))
    result.duration = max(config.duration, time.monotonic() - started)
    return result
