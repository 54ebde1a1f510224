"""Reading pretix's web-shop pages: its server-rendered forms, order URLs, checkout steps, availability boxes and
quota messages. What the shop journey needs to act like a browser, without a browser."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

# pretix's quota messages, in English and in the shop's Portuguese (pretix/locale/pt_PT), lower case
SOLD_OUT_MESSAGES = (
    "no longer available", "not enough quota", "sold out", "fully booked",
    "já não estão disponíveis", "não estão mais disponíveis", "já não estavam disponíveis",
    "já não se encontra disponível", "não está mais disponível", "não há quota suficiente", "esgotad",
)
BUSY_MESSAGES = ("too busy", "demasiado ocupado", "ocupado demais")
ORDER_URL = re.compile(r"/order/([A-Z0-9]+)/([A-Za-z0-9]+)/")
CHECKOUT_STEP = re.compile(r"/checkout/([a-z_]+)/")
MAX_CHECKOUT_PAGES = 8  # customer, questions, payment, confirm, and a little slack for a repeated page
REFERENCE_PREFIX = "lab-"

_FORM_OPEN = re.compile(r"<form\b([^>]*)>", re.I)
_FORM_CLOSE = re.compile(r"</form\s*>", re.I)
_CONTROL = re.compile(r"<(input|select|/select|option|textarea|button)\b([^>]*)>", re.I)
_ATTR = re.compile(r"""([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_TEXTAREA_END = re.compile(r"</textarea\s*>", re.I)


# ---------------------------------------------------------------------------------------------------------------
# Forms: a small regex reader, enough for pretix's server-rendered forms (no nesting, no scripts needed)

def _attrs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in _ATTR.finditer(text):
        name = m.group(1).lower()
        value = m.group(2) if m.group(2) is not None else m.group(3) if m.group(3) is not None else m.group(4)
        out.setdefault(name, html.unescape(value) if value else "")
    return out


@dataclass(slots=True)
class Form:
    """One <form>: where it goes, and what a browser would submit without the user touching anything."""

    action: str
    method: str
    attrs: dict[str, str]
    fields: list[tuple[str, str]] = field(default_factory=list)  # successful controls, in document order
    controls: list[dict[str, str]] = field(default_factory=list)  # every named control's attributes (+ "tag")

    def names(self) -> set[str]:
        return {c["name"] for c in self.controls}

    def control(self, name: str) -> dict[str, str] | None:
        return next((c for c in self.controls if c["name"] == name), None)

    def data(self, **overrides: str) -> dict[str, str]:
        """The default submission with overrides (a later value of a repeated name wins: fine for pretix)."""
        out = dict(self.fields)
        out.update(overrides)
        return out


def parse_form(page: str, start: int, end: int, attrs: dict[str, str]) -> Form:
    """The controls of page[start:end] (the inside of one form)."""
    form = Form(action=attrs.get("action", ""), method=attrs.get("method", "get").lower(), attrs=attrs)
    select: str | None = None
    options: list[tuple[str, bool]] = []
    for m in _CONTROL.finditer(page, start, end):
        tag = m.group(1).lower()
        if tag == "/select":
            if select is not None:
                chosen = next((v for v, sel in options if sel), options[0][0] if options else None)
                if chosen is not None:
                    form.fields.append((select, chosen))
            select, options = None, []
            continue
        a = _attrs(m.group(2))
        if tag == "option":
            if select is not None:
                options.append((a.get("value", ""), "selected" in a))
            continue
        name = a.get("name")
        if not name:
            continue
        a["tag"] = tag
        form.controls.append(a)
        if "disabled" in a or tag == "button":
            continue
        if tag == "select":
            select, options = name, []
        elif tag == "textarea":
            close = _TEXTAREA_END.search(page, m.end(), end)
            form.fields.append((name, html.unescape(page[m.end():close.start() if close else m.end()]).lstrip("\n")))
        else:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                continue
            if kind in ("checkbox", "radio") and "checked" not in a:
                continue
            form.fields.append((name, a.get("value", "on" if kind in ("checkbox", "radio") else "")))
    return form


def find_form(page: str, predicate: Callable[[dict[str, str]], bool]) -> Form | None:
    """The first form whose <form ...> attributes satisfy predicate; only that form's inside is scanned."""
    for m in _FORM_OPEN.finditer(page):
        attrs = _attrs(m.group(1))
        if predicate(attrs):
            close = _FORM_CLOSE.search(page, m.end())
            return parse_form(page, m.end(), close.start() if close else len(page), attrs)
    return None


def _post_form(page: str) -> Form | None:
    """The page's own POST form (no action: it posts back to the page), not the cart box's extend/remove forms."""
    return find_form(page, lambda a: a.get("method", "").lower() == "post" and not a.get("action"))


# ---------------------------------------------------------------------------------------------------------------
# Small pure helpers

def is_sold_out_message(message: str) -> bool:
    low = message.lower()
    return any(marker in low for marker in SOLD_OUT_MESSAGES)


def attempt_reference(attempt_id: str) -> str:
    """What the journey writes into the order (invoice address internal reference) to name its attempt."""
    return REFERENCE_PREFIX + attempt_id.replace("-", "")[:12]


def tagged_email(email: str, attempt_id: str) -> str:
    """buyer@domain -> buyer+<attempt12>@domain (a guest's order email names its attempt)."""
    local, _, domain = email.partition("@")
    return f"{local.split('+', 1)[0]}+{attempt_id.replace('-', '')[:12]}@{domain}"


def order_from_url(url: str) -> tuple[str, str] | None:
    """(code, secret) from a URL holding /order/<CODE>/<secret>/."""
    m = ORDER_URL.search(url)
    return (m.group(1), m.group(2)) if m else None


def checkout_step(url: str) -> str:
    """'customer' from /org/event/checkout/customer/ ('' when the URL is not a checkout step)."""
    m = CHECKOUT_STEP.search(url)
    return m.group(1) if m else ""


_ARTICLE = re.compile(r'<article\b[^>]*\bid="item-(\d+)"', re.I)
_AVAILABILITY = re.compile(r'availability-box\s+([a-z-]+)')


def item_availability(page: str, item: int) -> str | None:
    """The product's availability box on the event page: "available", "gone" (SOLD OUT / FULLY BOOKED),
    "reserved" (all that is left sits in carts), "unavailable" (not yet / no longer on sale, voucher only);
    None when the product is not listed."""
    for m in _ARTICLE.finditer(page):
        if int(m.group(1)) == item:
            end = page.find("</article>", m.end())
            end = end if end >= 0 else len(page)
            box = _AVAILABILITY.search(page, m.end(), end)
            if box is None:
                return None
            if box.group(1) == "unavailable" and "<strong>" in page[box.end():end]:
                return "reserved"  # pretix shows <strong>Reserved</strong> here, the other reasons in <small>
            return box.group(1)
    return None


def _path_of(url: str) -> str:
    return httpx.URL(url).path
