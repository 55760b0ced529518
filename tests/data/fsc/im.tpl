//Parameters for the coalescence simulation program : fastsimcoal2
3 samples to simulate
//Population effective sizes (number of genes)
NPOP1
$NPOP2$
NPOP3
//Samples sizes
20
10
0
//Growth rates
0
0
0
//Number of migration matrices
2
//Migration matrix 0
0 MIG 0
MIG 0 0
0 0 0
//Migration matrix 1
0 0 0
0 0 0
0 0 0
//historical event: time, source, sink, migrants, new deme size, new growth rate, migration matrix index
3 historical event
TBOT 0 0 0 RBOT 0 0
TDIV 1 2 1 1 0 1
TANC 0 2 1 RANC 0 1 absoluteResize
//Number of independent loci [chromosome]
1 0
//Per chromosome: Number of linkage blocks
1
//per Block: data type, num loci, rec. rate and mut rate + optional parameters
DNA 1000 0 1e-8 0.33
