# Distinct DRAM bytes of the layer forward against Avg.K, per model and T, from bench_traffic's
# CSV: counted with the mask (points), dense Top-K on the same experts (open squares), and the
# ideal bytes (line), one panel per model and T of the full report (3 models × T = 1, 4, 16, 64).
# Usage: gnuplot -e "csv='traffic.csv'; device='sm_90a'" bench/plot_traffic.gp
if (!exists("csv")) csv = 'traffic.csv'
if (!exists("out")) out = 'traffic_vs_avg_k.png'
if (!exists("device")) device = 'sm_90a'
set datafile separator ','
set datafile nocolumnheaders
set terminal pngcairo size 1500,1000 font ',10' noenhanced
set output out
set multiplot layout 3,4 title sprintf('beam layer forward at decode: distinct DRAM bytes (counted on the emulator, %s model)', device)
set grid
set logscale y
set xlabel 'Avg.K (kept experts per token)'
set ylabel 'MB'
set key top left
set offsets graph 0.05, graph 0.05, graph 0.1, graph 0.1
models = 'Qwen3-30B-A3B DeepSeek-V2-Lite Qwen1.5-MoE-A2.7B'
tokens = '1 4 16 64'
do for [m in models] {
  do for [t in tokens] {
    set title sprintf('%s, T = %s', m, t)
    rows(kind) = sprintf("< awk -F, '$1==\"%s\" && $2==%s && $5==\"%s\"' %s | sort -t, -k4 -g", m, t, kind, csv)
    plot rows('mask') using 4:($8/1e6) with points pt 7 ps 1.2 title 'masked: counted', \
         rows('mask') using 4:($9/1e6) with linespoints lw 1.5 pt 6 ps 0.6 title 'masked: ideal', \
         rows('dense Top-K') using 4:($8/1e6) with points pt 4 ps 1.8 title 'dense Top-K: counted'
  }
}
unset multiplot
