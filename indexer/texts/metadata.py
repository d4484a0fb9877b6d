"""Words a photo carries in its metadata: EXIF (ImageDescription, UserComment, Windows XPTitle,
XPComment, XPSubject, XPKeywords), IPTC (object name, caption, keywords) and XMP (dc:title,
dc:description, dc:subject).

Only the header is read (Pillow opens a file without decoding its pixels). XMP is read with a
pattern over a bounded packet, not an XML parser: no entity expansion, no external references.
"""

from __future__ import annotations

import re
import warnings

from .sources import FolderListing, ItemFacts, Piece, TextUnreadable, bounded, open_regular

EXIF_DESCRIPTION, EXIF_IFD, USER_COMMENT = 0x010E, 0x8769, 0x9286
XP_TITLE, XP_COMMENT, XP_KEYWORDS, XP_SUBJECT = 0x9C9B, 0x9C9C, 0x9C9E, 0x9C9F
MAX_XMP_BYTES = 1024 * 1024
_XMP_FIELD = re.compile(rb"<dc:(title|description|subject)\b[^>]*>(.*?)</dc:\1>", re.DOTALL)
_XMP_ITEM = re.compile(rb"<rdf:li\b[^>]*>(.*?)</rdf:li>", re.DOTALL)
_XML_ENTITIES = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&amp;": "&"}


def _text(value) -> str:
    """An EXIF or IPTC value as text: bytes as UTF-8 (else Latin-1), Windows XP tags as UTF-16LE."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) for v in value):  # XP tags come as a tuple of bytes
            return bytes(value).decode("utf-16-le", "replace").rstrip("\x00")
        return "; ".join(_text(v) for v in value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8").rstrip("\x00")
        except UnicodeDecodeError:
            return value.decode("latin-1").rstrip("\x00")
    return str(value).rstrip("\x00")


def _xp(value) -> str:
    return bytes(value).decode("utf-16-le", "replace").rstrip("\x00") if isinstance(value, (bytes, tuple, list)) \
        else str(value)


def _user_comment(value) -> str:
    """EXIF UserComment: an 8-byte character-code prefix, then the text."""
    if not isinstance(value, bytes):
        return str(value)
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        return body.decode("utf-16-be" if body[:1] == b"\x00" else "utf-16-le", "replace").rstrip("\x00")
    return body.decode("utf-8", "replace").rstrip("\x00 ")


def _unescape(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    for entity, character in _XML_ENTITIES.items():
        text = text.replace(entity, character)
    return re.sub(r"<[^>]*>", "", text).strip()


def xmp_fields(packet: bytes) -> dict[str, list[str]]:
    """dc:title, dc:description and dc:subject values of an XMP packet."""
    found: dict[str, list[str]] = {}
    for name, body in _XMP_FIELD.findall(packet[:MAX_XMP_BYTES]):
        items = _XMP_ITEM.findall(body) or [body]
        found.setdefault(name.decode(), []).extend(v for v in (_unescape(i) for i in items) if v)
    return found


class MetadataSource:
    """Captions and keywords from a photo's EXIF, IPTC and XMP."""

    name = "metadata"
    extractor = "metadata 1"

    def signature(self, item: ItemFacts, folder: FolderListing) -> str | None:
        return item.content_hash if item.local and item.kind == "image" else None

    def read(self, item: ItemFacts, folder: FolderListing) -> list[Piece]:
        from PIL import Image, IptcImagePlugin

        captions: list[str] = []
        keywords: list[str] = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with open_regular(item.path) as handle, Image.open(handle) as image:
                    exif = image.getexif()
                    captions += [_text(exif[EXIF_DESCRIPTION])] if EXIF_DESCRIPTION in exif else []
                    captions += [_xp(exif[tag]) for tag in (XP_TITLE, XP_COMMENT, XP_SUBJECT) if tag in exif]
                    keywords += [_xp(exif[XP_KEYWORDS])] if XP_KEYWORDS in exif else []
                    details = exif.get_ifd(EXIF_IFD)
                    captions += [_user_comment(details[USER_COMMENT])] if USER_COMMENT in details else []
                    iptc = IptcImagePlugin.getiptcinfo(image) or {}
                    captions += [_text(iptc[key]) for key in ((2, 5), (2, 120)) if key in iptc]
                    keywords += [_text(iptc[(2, 25)])] if (2, 25) in iptc else []
                    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
                    xmp = xmp.encode("utf-8", "replace") if isinstance(xmp, str) else xmp
                    fields = xmp_fields(xmp)
                    captions += fields.get("title", []) + fields.get("description", [])
                    keywords += fields.get("subject", [])
        except OSError as exc:
            raise TextUnreadable(f"cannot read its metadata: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a mangled metadata block: the item keeps its vector
            raise TextUnreadable(f"its metadata is damaged: {type(exc).__name__}") from None
        pieces = [Piece("caption", text.strip()) for text in dict.fromkeys(captions) if text.strip()]
        pieces += [Piece("keywords", text.strip()) for text in dict.fromkeys(keywords) if text.strip()]
        return bounded(pieces)
