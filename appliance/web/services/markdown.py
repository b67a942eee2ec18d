"""Knowledge-base Markdown to HTML that is safe to put in a page.

Two layers, so neither has to be perfect: markdown-it-py renders CommonMark with raw HTML
turned off (``<script>`` in an article is shown as text) and refuses ``javascript:``-style
link targets; nh3 (the Rust ammonia sanitiser) then keeps only the tags, attributes and URL
schemes listed here, whatever the renderer let through.
"""

from __future__ import annotations

import functools

import nh3
from markdown_it import MarkdownIt

TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code", "pre",
        "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td"}
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"},
              "th": {"style"}, "td": {"style"}}
URL_SCHEMES = {"http", "https", "mailto"}


@functools.cache
def _renderer() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"])


def render(text: str) -> str:
    """``text`` (an article's Markdown) as sanitised HTML."""
    html = _renderer().render(text or "")
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow", strip_comments=True,
                     filter_style_properties={"text-align"})
