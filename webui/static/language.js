// Switches Gradio's own i18n locale from the top bar and remembers the choice in the browser, so a reload
// or a restarted server opens the page in the same language. The frontend's core module (already loaded,
// so importing it again returns the same instance) exports changeLocale. LANGUAGE_CODES is filled in by
// webui/page.py from webui/i18n.py. Called with the choice (a change) or with nothing (the page opened:
// the remembered choice, else the browser's language).
async (language) => {
  const codes = LANGUAGE_CODES;
  const key = "tunedeck-language";
  if (!language || !(language in codes)) {
    const saved = window.localStorage.getItem(key);
    const browser = (navigator.language || "").toLowerCase().startsWith("zh") ? "中文" : "English";
    language = saved && saved in codes ? saved : browser;
  } else {
    window.localStorage.setItem(key, language);
  }
  const code = codes[language] || "en";
  // The page's CSS words what Gradio leaves in English (the toasts' titles) from this mark.
  document.documentElement.setAttribute("data-td-lang", code.startsWith("zh") ? "zh" : "en");
  const urls = performance.getEntriesByType("resource").map((e) => e.name)
    .filter((n) => /\/assets\/core-[^/]+\.js$/.test(n));
  for (const url of urls) {
    try { const m = await import(url); if (m.changeLocale) { m.changeLocale(code); break; } } catch (e) {}
  }
  return language;
}
