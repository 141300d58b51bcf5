// Starts Swagger UI on /docs. A file rather than an inline script: the page's
// Content-Security-Policy runs scripts from this server only.
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    // Never send the schema to validator.swagger.io for the badge.
    validatorUrl: null,
  });
})();
