set datafile separator ','
set terminal pngcairo size 900,600
set output 'quality_vs_avg_k.png'
set xlabel 'Avg.K (active experts per token)'
set ylabel 'quality: perplexity ratio dense / model'
set key bottom right
set grid
set offsets graph 0.04, graph 0.04, graph 0.04, graph 0.04  # no marker on the frame
series(m) = sprintf("< grep '^%s,' results.csv", m)
plot series('BEAM') using 3:8 with linespoints pt 7 title 'BEAM (β sweep)', \
     series('top-p') using 3:8 with linespoints title 'top-p (dense model)', \
     series('Top-K pruning') using 3:8 with linespoints title 'Top-K pruning', \
     series('Top-K reduced') using 3:8 with linespoints title 'Top-K reduced (fine-tuned)', \
     series('ablation: no L_reg') using 3:8 with points pt 9 ps 1.5 title 'ablation: no L_{reg}', \
     series('ablation: soft mask') using 3:8 with points pt 11 ps 1.5 title 'ablation: soft mask', \
     series('dense Top-K') using 3:8 with points pt 5 ps 2 title 'dense Top-K'
