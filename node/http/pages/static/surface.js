// A tiny WebGL viewer for the job's binary STL: shaded triangles, drag to rotate, wheel to zoom.
(function () {
  "use strict";
  const canvas = document.getElementById("mesh");
  const info = document.getElementById("mesh-info");
  const gl = canvas && canvas.getContext("webgl", { preserveDrawingBuffer: true });
  if (!gl) { if (info) info.textContent = "WebGL is not available in this browser"; return; }

  function parseStl(buffer) {
    const view = new DataView(buffer), n = view.getUint32(80, true);
    const positions = new Float32Array(n * 9), normals = new Float32Array(n * 9);
    const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (let t = 0; t < n; t++) {
      const o = 84 + t * 50 + 12, v = [];
      for (let k = 0; k < 9; k++) {
        const x = view.getFloat32(o + k * 4, true);
        positions[t * 9 + k] = x; v.push(x);
        lo[k % 3] = Math.min(lo[k % 3], x); hi[k % 3] = Math.max(hi[k % 3], x);
      }
      const a = [v[3] - v[0], v[4] - v[1], v[5] - v[2]], b = [v[6] - v[0], v[7] - v[1], v[8] - v[2]];
      let c = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
      const len = Math.hypot(c[0], c[1], c[2]) || 1;
      c = c.map((x) => x / len);
      for (let k = 0; k < 9; k++) normals[t * 9 + k] = c[k % 3];
    }
    const centre = lo.map((x, i) => (x + hi[i]) / 2);
    const size = Math.max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) || 1;
    for (let i = 0; i < positions.length; i++) positions[i] = (positions[i] - centre[i % 3]) / size;
    return { positions, normals, count: n * 3, size };
  }

  function shader(type, source) {
    const s = gl.createShader(type);
    gl.shaderSource(s, source); gl.compileShader(s);
    return s;
  }
  const program = gl.createProgram();
  gl.attachShader(program, shader(gl.VERTEX_SHADER, `
    attribute vec3 p; attribute vec3 n; uniform mat4 m; uniform float zoom; varying vec3 vn;
    void main() { vec4 r = m * vec4(p, 1.0); vn = (m * vec4(n, 0.0)).xyz;
      gl_Position = vec4(r.xy * zoom, r.z * 0.5, 1.0); }`));
  gl.attachShader(program, shader(gl.FRAGMENT_SHADER, `
    precision mediump float; varying vec3 vn;
    void main() { float d = abs(dot(normalize(vn), normalize(vec3(0.4, 0.5, -1.0))));
      gl_FragColor = vec4(vec3(0.9, 0.25, 0.2) * (0.25 + 0.75 * d), 1.0); }`));
  gl.linkProgram(program);
  gl.useProgram(program);

  function buffer(data, name) {
    gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    const at = gl.getAttribLocation(program, name);
    gl.enableVertexAttribArray(at);
    gl.vertexAttribPointer(at, 3, gl.FLOAT, false, 0, 0);
  }

  function rotation(yaw, pitch) {  // column-major: rotate about y by yaw, then about x by pitch
    const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
    return new Float32Array([cy, sp * sy, -cp * sy, 0, 0, cp, sp, 0, sy, -sp * cy, cp * cy, 0, 0, 0, 0, 1]);
  }

  let mesh = null, yaw = 0.6, pitch = -0.5, zoom = 1.4;
  function draw() {
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0.02, 0.03, 0.04, 1); gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    if (!mesh) return;
    gl.enable(gl.DEPTH_TEST);
    gl.uniformMatrix4fv(gl.getUniformLocation(program, "m"), false, rotation(yaw, pitch));
    gl.uniform1f(gl.getUniformLocation(program, "zoom"), zoom * canvas.height / canvas.width);
    gl.drawArrays(gl.TRIANGLES, 0, mesh.count);
    canvas.dataset.yaw = yaw.toFixed(3);
  }

  let drag = null;
  canvas.addEventListener("pointerdown", (e) => { drag = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    yaw += (e.clientX - drag[0]) * 0.01; pitch += (e.clientY - drag[1]) * 0.01;
    drag = [e.clientX, e.clientY]; draw();
  });
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); zoom *= e.deltaY > 0 ? 0.9 : 1.1; draw(); }, { passive: false });

  fetch(canvas.dataset.src, { credentials: "same-origin" }).then((r) => r.arrayBuffer()).then((data) => {
    mesh = parseStl(data);
    buffer(mesh.positions, "p"); buffer(mesh.normals, "n");
    info.textContent = `${mesh.count / 3} triangles, ${mesh.size.toFixed(0)} mm across`;
    canvas.dataset.ready = "1";
    draw();
  });
})();
