// MathJax settings for the math of the guide pages (pymdownx.arithmatex, generic mode), the
// API reference (reST math roles turned into \( \) by docs/hooks.py) and the notebooks.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
};
