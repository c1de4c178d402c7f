"""Requests that look like status questions but need a person: a delivery that went wrong and a
change to the order ("my package says delivered but i don't have it", "change my pharmacy to
cvs"). Answering those with the status would repeat what the patient already knows is wrong.
"""

from __future__ import annotations

import re

from bot.understanding.normalize import strip_accents

DELIVERY_PROBLEM = "delivery_problem"
CHANGE_REQUEST = "change_request"

_NOT_HAVE = (
    r"(?:i\s+)?(?:do\s*n[o']?t|dont|didn'?t|didnt|never|have\s*n[o']?t|havent|haven't|cant|"
    r"can'?t|no)\s+(?:have|got|get|gotten|receive[d]?|see|seen|find|found)"
)
_DELIVERY_PROBLEM = [
    # "says delivered but i don't have it", "marked as delivered, nothing here"
    rf"\bdeliver(?:ed|y)\b.{{0,60}}\b(?:but|and|yet|still)\b.{{0,30}}(?:{_NOT_HAVE}|nothing|"
    r"not here|isn'?t here|no package|no box|not at my)",
    rf"\b{_NOT_HAVE}\b.{{0,40}}\b(?:says|shows|marked|said)\b.{{0,20}}\bdeliver",
    r"\b(?:package|box|order|delivery|shipment|meds|medication|pen|pens|vials?)\b.{0,40}\b(?:"
    r"stolen|missing|damaged|broken|crushed|leak(?:ing|ed)|melted|warm|open(?:ed)?|empty|lost)\b",
    r"\b(?:stolen|missing|damaged|broken|crushed|leaking|lost)\b.{0,30}\b(?:package|box|order|"
    r"delivery|shipment|meds|medication|pens?|vials?)\b",
    r"\bnever\s+(?:arrived|came|showed\s+up|got\s+here|received|got\s+it)\b",
    r"\bwrong\s+(?:address|item|medication|medicine|package|box|order|dose|house)\b",
    r"\bdelivered\s+to\s+(?:the\s+)?wrong\b",
    # Spanish
    r"\b(?:dice|aparece|sale|marca)\b.{0,30}\bentregad[oa]\b.{0,40}\bno\b.{0,20}\b(?:tengo|"
    r"recibi|llego|lo\s+tengo|la\s+tengo|veo|encuentro)\b",
    r"\bnunca\s+(?:llego|me\s+llego|recibi|lo\s+recibi)\b",
    r"\b(?:paquete|caja|pedido|envio|medicina|medicamento)\b.{0,40}\b(?:robad[oa]|perdid[oa]|"
    r"danad[oa]|rot[oa]|abiert[oa]|vaci[oa]|caliente)\b",
    r"\bdireccion\s+(?:equivocada|incorrecta)\b",
]
_CHANGE_REQUEST = [
    r"\b(?:change|switch|transfer|update|move|use)\b.{0,25}\b(?:pharmacy|pharmacies)\b",
    r"\b(?:send|transfer|move)\b.{0,30}\bto\s+(?:a\s+)?(?:different|another|new|other)\s+"
    r"(?:pharmacy|address)\b",
    r"\b(?:change|update|correct|fix|new)\b.{0,25}\b(?:shipping|delivery|mailing|home)?\s*"
    r"address\b",
    r"\bi\s+(?:moved|have\s+a\s+new\s+address)\b",
    # Spanish
    r"\b(?:cambiar|cambiame|cambien|cambia|pasar|transferir|mandar|enviar)\b.{0,30}\b(?:otra\s+)?"
    r"farmacia\b",
    r"\b(?:cambiar|cambiame|actualizar|corregir|nueva)\b.{0,25}\bdireccion\b",
    r"\bme\s+mude\b",
]
_DELIVERY = [re.compile(p) for p in _DELIVERY_PROBLEM]
_CHANGE = [re.compile(p) for p in _CHANGE_REQUEST]


def detect(text: str) -> str | None:
    """`delivery_problem`, `change_request` or None."""
    folded = strip_accents(text.lower())
    if any(p.search(folded) for p in _DELIVERY):
        return DELIVERY_PROBLEM
    if any(p.search(folded) for p in _CHANGE):
        return CHANGE_REQUEST
    return None
