// The dashboard's charts, drawn with the vendored Chart.js (window.Chart).
import { usd } from "./common.js";

const { Chart } = window;
Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
Chart.defaults.plugins.legend.labels.boxWidth = 12;
Chart.defaults.datasets.bar.maxBarThickness = 36;
Chart.defaults.elements.point.radius = 3;

const BLUE = "#2f6fed";
const LIGHT_BLUE = "#9dbaf6";
const GREEN = "#127a45";
const GREY = "#98a2b3";
// The sources of savings as the admin API names them, their labels and colours.
export const SOURCES = [
  ["discount", "Provider discount"],
  ["response_cache", "Response cache"],
  ["semantic_cache", "Semantic cache"],
  ["prompt_cache", "Prompt caching"],
  ["route", "Cheaper route"],
];
const SOURCE_COLOURS = ["#127a45", "#2f6fed", "#7a5af8", "#f79009", "#0e9384"];

const charts = {
  day: new Chart(document.getElementById("chart-day"), {
    data: {
      labels: [],
      datasets: [
        {
          type: "bar", label: "Requests", data: [], backgroundColor: LIGHT_BLUE,
          yAxisID: "y", order: 2,
        },
        {
          type: "line", label: "Spend", data: [], borderColor: BLUE, backgroundColor: BLUE,
          yAxisID: "usd", order: 0,
        },
        {
          type: "line", label: "At list price", data: [], borderColor: GREY,
          backgroundColor: GREY, borderDash: [5, 4], yAxisID: "usd", order: 1,
        },
      ],
    },
    options: {
      scales: {
        y: { beginAtZero: true, title: { display: true, text: "requests" }, ticks: { precision: 0 } },
        usd: {
          beginAtZero: true, position: "right", grid: { drawOnChartArea: false },
          ticks: { callback: (value) => usd(value) },
        },
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: (item) => item.dataset.yAxisID === "usd"
              ? `${item.dataset.label}: ${usd(item.raw)}`
              : `${item.dataset.label}: ${item.raw}`,
          },
        },
      },
    },
  }),
  model: new Chart(document.getElementById("chart-model"), {
    type: "bar",
    data: {
      labels: [],
      datasets: [
        { label: "Prompt", data: [], backgroundColor: LIGHT_BLUE },
        { label: "Completion", data: [], backgroundColor: BLUE },
      ],
    },
    options: {
      indexAxis: "y",
      scales: { x: { stacked: true, beginAtZero: true }, y: { stacked: true } },
    },
  }),
  savings: new Chart(document.getElementById("chart-savings"), {
    type: "bar",
    data: {
      labels: [],
      datasets: SOURCES.map(([, label], index) => ({
        label, data: [], backgroundColor: SOURCE_COLOURS[index],
      })),
    },
    options: {
      scales: {
        x: { stacked: true },
        y: { stacked: true, beginAtZero: true, ticks: { callback: (value) => usd(value) } },
      },
      plugins: { tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${usd(item.raw)}` } } },
    },
  }),
  key: new Chart(document.getElementById("chart-key"), {
    type: "bar",
    data: { labels: [], datasets: [{ label: "Requests", data: [], backgroundColor: GREEN }] },
    options: {
      indexAxis: "y",
      scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
      plugins: { legend: { display: false } },
    },
  }),
};

function show(chart, labels, ...series) {
  chart.data.labels = labels;
  series.forEach((data, index) => {
    chart.data.datasets[index].data = data;
  });
  chart.update();
}

export function drawCharts({ byDay, byModel, byKey, keyName }) {
  show(
    charts.day,
    byDay.map((row) => row.day),
    byDay.map((row) => row.requests),
    byDay.map((row) => row.cost_usd),
    byDay.map((row) => row.list_cost_usd),
  );
  show(
    charts.model,
    byModel.map((row) => row.model),
    byModel.map((row) => row.prompt_tokens),
    byModel.map((row) => row.completion_tokens),
  );
  show(charts.key, byKey.map((row) => keyName(row.key)), byKey.map((row) => row.requests));
  show(
    charts.savings,
    byDay.map((row) => row.day),
    ...SOURCES.map(([source]) => byDay.map((row) => row.savings_by_source[source])),
  );
}
