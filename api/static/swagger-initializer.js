// Starts Swagger UI on /api/docs (api/api_docs.py). A file rather than an inline script, so the
// page runs under the shop's Content-Security-Policy; the page passes the OpenAPI document's URL
// and flask-smorest's OPENAPI_SWAGGER_UI_CONFIG in data attributes.
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui-container");
  var config = {
    url: container.dataset.specUrl,
    dom_id: "#swagger-ui-container",
    presets: [SwaggerUIBundle.presets.apis],
  };
  var overrides = JSON.parse(container.dataset.config || "{}");
  for (var name in overrides) { config[name] = overrides[name]; }
  window.ui = SwaggerUIBundle(config);
});
