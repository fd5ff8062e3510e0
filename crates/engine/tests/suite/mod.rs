mod promote;
mod run;
