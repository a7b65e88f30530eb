// Switches Gradio's own i18n locale from the top bar: the frontend's core module (already loaded, so
// importing it again returns the same instance) exports changeLocale. The footer's Settings panel
// offers the same choice should a future Gradio rename the module. LANGUAGE_CODES is filled in by
// webui/page.py from webui/i18n.py.
async (language) => {
  const codes = LANGUAGE_CODES;
  const code = codes[language] || "en";
  const urls = performance.getEntriesByType("resource").map((e) => e.name)
    .filter((n) => /\/assets\/core-[^/]+\.js$/.test(n));
  for (const url of urls) {
    try { const m = await import(url); if (m.changeLocale) { m.changeLocale(code); break; } } catch (e) {}
  }
  return language;
}
