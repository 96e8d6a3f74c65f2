"""The dashboard's stylesheet, inlined into the page (one request, nothing fetched elsewhere).

Light and dark follow the system setting (``prefers-color-scheme``); the grid collapses to
one column on a phone.
"""

STYLESHEET = """
:root{--bg:#f6f7f9;--card:#fff;--fg:#1d232b;--muted:#667085;--line:#e3e6eb;
--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;
--c0:#2f6fdf;--c1:#d9480f;--c2:#2b8a3e;--c3:#ae3ec9;--c4:#0c8599;--c5:#c2255c;--c6:#5f3dc4;
--c7:#e67700}
@media (prefers-color-scheme:dark){:root{--bg:#0f1217;--card:#181c23;--fg:#e6e9ee;
--muted:#98a2b3;--line:#2a303a;--ok:#3fb950;--warn:#d29922;--bad:#f85149;
--c0:#6ea8fe;--c1:#ff8a4c;--c2:#69db7c;--c3:#da77f2;--c4:#3bc9db;--c5:#f783ac;--c6:#9775fa;
--c7:#ffc078}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.4rem 1rem;padding:.8rem 1rem}
h1{font-size:1.3rem;margin:0}
.updated{color:var(--muted);font-size:.85rem}
.ranges{margin-left:auto;display:flex;gap:.25rem}
.ranges a{padding:.25rem .6rem;border-radius:999px;color:var(--fg);text-decoration:none;
border:1px solid var(--line);font-size:.85rem}
.ranges a[aria-current]{background:var(--fg);color:var(--bg)}
main{padding:0 1rem 1rem;max-width:1200px;margin:0 auto}
.strip{list-style:none;padding:0;margin:0 0 1rem;display:flex;flex-wrap:wrap;gap:.5rem}
.strip li{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--ok);
border-radius:8px;padding:.4rem .7rem;min-width:0;max-width:100%}
.strip li.warn{border-left-color:var(--warn)}.strip li.bad{border-left-color:var(--bad)}
.strip .state{font-weight:600}.strip .ok .state{color:var(--ok)}
.strip .warn .state{color:var(--warn)}.strip .bad .state{color:var(--bad)}
.strip small{color:var(--muted)}
.strip .err{color:var(--muted);font-size:.8rem;overflow-wrap:anywhere}
.strip pre{margin:.3rem 0 0;white-space:pre-wrap;font-size:.8rem;overflow-wrap:anywhere}
.devices{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:.6rem;
margin-bottom:1rem}
.device,.card{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:.6rem .8rem}
.device h3{margin:0;font-size:1rem;overflow-wrap:anywhere}
.device small{color:var(--muted)}
.device table{width:100%;border-collapse:collapse;margin-top:.3rem}
.device th{font-weight:400;color:var(--muted);text-align:left;padding:.1rem 0}
.device td.v{text-align:right;font-weight:600;font-variant-numeric:tabular-nums;
padding:.1rem .4rem;white-space:nowrap}
.device td.age{text-align:right;color:var(--muted);font-size:.8rem;white-space:nowrap}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,460px),1fr));
gap:.8rem}
figure{margin:0}
figcaption{font-weight:600;margin-bottom:.3rem}
svg.chart{width:100%;height:auto;display:block}
.grid{stroke:var(--line);stroke-width:1}
.tick,.lane{fill:var(--muted);font-size:12px}
.lane{fill:var(--fg)}
figcaption small{color:var(--muted);font-weight:400}
.line{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}
.band{opacity:.75}
.legend{list-style:none;padding:0;margin:.3rem 0 0;display:flex;flex-wrap:wrap;gap:.2rem .8rem;
font-size:.8rem;color:var(--muted)}
.legend i{display:inline-block;width:.8rem;height:.25rem;border-radius:2px;margin-right:.3rem;
vertical-align:middle;background:currentColor}
.c0{stroke:var(--c0);fill:var(--c0);color:var(--c0)}.c1{stroke:var(--c1);fill:var(--c1);color:var(--c1)}
.c2{stroke:var(--c2);fill:var(--c2);color:var(--c2)}.c3{stroke:var(--c3);fill:var(--c3);color:var(--c3)}
.c4{stroke:var(--c4);fill:var(--c4);color:var(--c4)}.c5{stroke:var(--c5);fill:var(--c5);color:var(--c5)}
.c6{stroke:var(--c6);fill:var(--c6);color:var(--c6)}.c7{stroke:var(--c7);fill:var(--c7);color:var(--c7)}
polyline.line{fill:none}
.legend li{color:var(--fg)}
.empty{color:var(--muted)}
footer{color:var(--muted);font-size:.8rem;text-align:center;padding:1rem}
footer a{color:inherit}
@media (max-width:520px){header{padding:.6rem .7rem}main{padding:0 .6rem .6rem}
.ranges{margin-left:0;width:100%}.devices{grid-template-columns:1fr 1fr;gap:.4rem}
.device{padding:.45rem .5rem;font-size:.85rem}.device td.age{display:none}
.device tr.stale td.age{display:table-cell}.device td.v{padding-right:0}}
"""
