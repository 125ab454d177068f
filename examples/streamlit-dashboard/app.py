"""The seed's Streamlit dashboard, served behind moat.

A sidebar radio picks one of four display modes (line chart, bar chart, area
chart, table) over a 20x3 frame of random numbers with columns a, b and c.

On a route with sign-in, moat tells the app who the visitor is. Streamlit
reads moat's headers into st.user (server.trustedUserHeaders, set in
.streamlit/config.toml and by `moat run`), so the page needs no code of its
own to know the user. When the user's groups or name change, or they sign
out, moat closes the page's WebSocket and Streamlit reconnects with the new
identity (or, signed out, cannot). It also checks moat's signed assertion
(X-Moat-Assertion) against moat's public keys, when it knows where they are
(MOAT_JWKS_URL, which `moat run` and backends.NAME.command set).
"""

import os
from urllib.parse import unquote

import jwt
import numpy as np
import pandas as pd
import streamlit as st

# The seed's labels, kept as they were: title, menu, prompt and the four modes
# (line chart, bar chart, area chart, table).
MODES = ("折れ線グラフ", "棒グラフ", "面グラフ", "テーブル")


@st.cache_resource
def moat_keys(url):
    """moat's JWKS, fetched once and refreshed when a new key id appears."""
    return jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=300, timeout=5)


def verified_assertion():
    """Checks X-Moat-Assertion and returns (claims, None) or (None, why)."""
    token = st.context.headers.get("X-Moat-Assertion")
    url = os.environ.get("MOAT_JWKS_URL")
    if not token:
        return None, "no X-Moat-Assertion header"
    if not url:
        return None, "MOAT_JWKS_URL is not set"
    audience = [a for a in os.environ.get("MOAT_AUDIENCE", "").split(",") if a]
    try:
        key = moat_keys(url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            issuer=os.environ.get("MOAT_ISSUER"),
            audience=audience or None,
            options={"require": ["exp", "iat", "sub", "email"], "verify_aud": bool(audience)},
            leeway=30,
        )
    except jwt.PyJWTError as e:
        return None, f"{type(e).__name__}: {e}"
    return claims, None


st.title("Streamlit Sample")

# moat deletes any X-Moat-* header a client sends and sets its own, so behind
# moat st.user is the signed-in user; on a public route it is empty.
email = st.user.get("email")
if email:
    # X-Moat-User-Name is percent-encoded UTF-8, so a name such as
    # "Jürgen" survives Starlette's Latin-1 reading of header values.
    name = unquote(st.user.get("name") or "")
    st.caption(f"Signed in as {name} ({email})" if name else f"Signed in as {email}")
    groups = st.user.get("groups") or ""
    st.caption(f"Groups: {groups}" if groups else "Groups: none")
    claims, why = verified_assertion()
    if claims and claims.get("email") == email:
        st.caption(f"Identity verified: X-Moat-Assertion signed by {claims['iss']}")
    else:
        st.caption(f"Identity not verified: {why or 'the assertion names another user'}")

with st.sidebar:
    st.title("[MENU]")
    option = st.sidebar.radio("表示形式を選択してください", MODES)

chart_data = pd.DataFrame(np.random.randn(20, 3), columns=["a", "b", "c"])

if option == MODES[0]:
    st.line_chart(chart_data)
elif option == MODES[1]:
    st.bar_chart(chart_data)
elif option == MODES[2]:
    st.area_chart(chart_data)
else:
    st.table(chart_data)
