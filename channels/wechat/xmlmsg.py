"""Safe parsing of the XML bodies WeChat posts (defusedxml: no DTDs, no entities, no bombs)."""
from __future__ import annotations

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from xml.etree.ElementTree import ParseError


class MalformedXml(Exception):
    """The body is not the flat ``<xml>…</xml>`` document WeChat sends."""


def parse_xml(body: bytes | str) -> dict[str, str]:
    """Parse a WeChat ``<xml>`` document into ``{tag: text}`` of its direct children.

    Nested elements (e.g. ``ScanCodeInfo``) are flattened one level as ``Parent.Child``.
    DTDs and entity declarations are refused outright.
    """
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError, ValueError, TypeError) as exc:
        raise MalformedXml(str(exc) or type(exc).__name__) from exc
    if root.tag != "xml":
        raise MalformedXml(f"root element is <{root.tag}>, expected <xml>")
    fields: dict[str, str] = {}
    for child in root:
        if len(child):
            for grandchild in child:
                fields[f"{child.tag}.{grandchild.tag}"] = (grandchild.text or "").strip()
        else:
            fields[child.tag] = (child.text or "").strip()
    return fields
