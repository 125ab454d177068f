"""The seed's Streamlit dashboard, served behind moat.

A sidebar radio picks one of four display modes (line chart, bar chart, area
chart, table) over a 20x3 frame of random numbers with columns a, b and c.
When moat has signed the visitor in, it passes who they are in the
X-Moat-User-Email header, which the page shows.
"""

import numpy as np
import pandas as pd
import streamlit as st

# The seed's labels, kept as they were: title, menu, prompt and the four modes
# (line chart, bar chart, area chart, table).
MODES = ("折れ線グラフ", "棒グラフ", "面グラフ", "テーブル")

st.title("Streamlit Sample")

# moat deletes any X-Moat-* header a client sends and sets its own, so on a
# route with sign-in this is the verified user; on a public route it is absent.
email = st.context.headers.get("X-Moat-User-Email")
if email:
    st.caption(f"Signed in as {email}")

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
